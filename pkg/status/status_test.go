package status

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readMap(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s is not a JSON object: %v\n%s", path, err, b)
	}
	return m
}

func sampleDoc() *Doc {
	return &Doc{
		PID: 42, Status: Running, Version: "1.2.3",
		StartedAt: time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC),
		Socket:    "/run/js/jsd.sock", FIFO: "/run/js/jobserver.fifo",
		Slots:  Slots{Total: 4, InUse: 1, Free: 3, Leased: 1},
		Leases: []Lease{{ID: 1, PID: 7, Slots: 1, Command: "make", Since: time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC)}},
	}
}

func TestFileWriteFresh(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.json")
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Path() != path {
		t.Fatalf("Path() = %q", f.Path())
	}
	if err := f.Write(sampleDoc()); err != nil {
		t.Fatal(err)
	}
	m := readMap(t, path)
	for _, k := range []string{"pid", "status", "version", "started_at", "socket", "fifo", "slots", "leases"} {
		if _, ok := m[k]; !ok {
			t.Errorf("key %q missing from %v", k, m)
		}
	}
	if _, ok := m["error"]; ok {
		t.Errorf("an empty error was written: %v", m)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("the temp file stayed behind: %v", err)
	}
	d, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if d.PID != 42 || d.Status != Running || d.Slots.Free != 3 || len(d.Leases) != 1 || !d.StartedAt.Equal(sampleDoc().StartedAt) {
		t.Fatalf("read back %+v", d)
	}
}

// A launcher's keys survive every write; jsd's own keys are jsd's.
func TestFileKeepsLauncherKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.json")
	if err := os.WriteFile(path, []byte(`{"status":"starting","foo":"bar","n":[1,2],"pid":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []string{Starting, Running, Stopped} {
		d := sampleDoc()
		d.Status = st
		if err := f.Write(d); err != nil {
			t.Fatal(err)
		}
		m := readMap(t, path)
		if m["foo"] != "bar" || len(m["n"].([]any)) != 2 || m["status"] != st || m["pid"] != float64(42) {
			t.Fatalf("after writing %s: %v", st, m)
		}
	}
}

// A file left by an earlier jsd is not a launcher's: what that jsd wrote
// (an error, a TCP port) must not outlive it when this one leaves it out.
func TestFileDropsAnEarlierDaemonsKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.json")
	old := sampleDoc()
	old.Status, old.Error, old.Host, old.Port, old.Warnings = Failed, "mkfifo: permission denied", "0.0.0.0", 11746, []string{"w"}
	f, _ := OpenFile(path)
	if err := f.Write(old); err != nil {
		t.Fatal(err)
	}
	// A launcher adds its key to that file, then a new jsd starts.
	m := readMap(t, path)
	m["launcher"] = "yes"
	b, _ := json.Marshal(m)
	os.WriteFile(path, b, 0o644)

	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Write(sampleDoc()); err != nil {
		t.Fatal(err)
	}
	m = readMap(t, path)
	for _, k := range []string{"error", "host", "port", "warnings"} {
		if v, ok := m[k]; ok {
			t.Errorf("the earlier jsd's %q (%v) is still there: %v", k, v, m)
		}
	}
	if m["launcher"] != "yes" || m["status"] != Running {
		t.Errorf("status file %v: want the launcher's key and running", m)
	}
}

func TestOpenFileReplacesWhatIsNotAnObject(t *testing.T) {
	cases := []struct {
		content string
		warn    bool
	}{
		{"", false},
		{"  \n", false},
		{"{}", false},
		{"null", true},
		{"[1,2]", true},
		{`"running"`, true},
		{"{broken", true},
		{`{"a":1} {"b":2}`, true},
	}
	for _, tc := range cases {
		path := filepath.Join(t.TempDir(), "status.json")
		os.WriteFile(path, []byte(tc.content), 0o644)
		f, err := OpenFile(path)
		if (err != nil) != tc.warn {
			t.Errorf("OpenFile of %q: warning %v, want one: %v", tc.content, err, tc.warn)
		}
		if f == nil {
			t.Fatalf("OpenFile of %q returned no file", tc.content)
		}
		if err := f.Write(sampleDoc()); err != nil {
			t.Fatalf("Write over %q: %v", tc.content, err)
		}
		if m := readMap(t, path); m["pid"] != float64(42) || len(m) != len(readMap(t, writeFresh(t))) {
			t.Errorf("Write over %q gave %v", tc.content, m)
		}
	}
}

// writeFresh writes sampleDoc to a new file and returns its path.
func writeFresh(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "fresh.json")
	f, _ := OpenFile(path)
	if err := f.Write(sampleDoc()); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	f, _ := OpenFile(filepath.Join(dir, "missing", "status.json"))
	if err := f.Write(sampleDoc()); err == nil {
		t.Fatal("Write into a missing directory: no error")
	}
	f, _ = OpenFile(filepath.Join(dir, "status.json"))
	if err := f.Write(func() {}); err == nil {
		t.Fatal("Write of a value JSON cannot encode: no error")
	}
	if _, err := OpenFile(dir); err == nil {
		t.Fatal("OpenFile of a directory: no warning")
	}
}

func TestParse(t *testing.T) {
	good := []string{
		`{"pid":1,"status":"running","slots":{"total":4,"free":4}}`,
		`{"pid":1,"unknown":{"deep":[1,2,3]},"status":"stopped"}`,
		" \n{\"status\":\"failed\",\"error\":\"boom\"}\n",
	}
	for _, s := range good {
		if _, err := Parse([]byte(s), "/x/status.json"); err != nil {
			t.Errorf("Parse(%q): %v", s, err)
		}
	}
	d, _ := Parse([]byte(good[2]), "status.json")
	if d.Status != Failed || d.Error != "boom" {
		t.Errorf("Parse: %+v", d)
	}
	bad := []string{"", "null", "[]", "42", `"running"`, "{", `{"pid":"one"}`, `{"started_at":"yesterday"}`}
	for _, s := range bad {
		_, err := Parse([]byte(s), "/some/dir/launch.json")
		if err == nil {
			t.Errorf("Parse(%q): no error", s)
			continue
		}
		if !strings.Contains(err.Error(), "launch.json") || strings.Contains(err.Error(), "/some/dir") {
			t.Errorf("Parse(%q) error %q should name the file (base name only)", s, err)
		}
	}
	if _, err := Read(filepath.Join(t.TempDir(), "missing.json")); !os.IsNotExist(err) {
		t.Errorf("Read of a missing file = %v, want not-exist", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"pid":1,"status":"running","version":"v","started_at":"2026-01-02T03:04:05.006Z","socket":"/s","fifo":"/f","slots":{"total":4,"in_use":1,"free":3,"waiting":0,"leased":1,"reclaimed":0},"leases":[{"id":1,"pid":7,"slots":1,"command":"make","since":"2026-01-02T03:04:06Z"}]}`))
	f.Add([]byte(`{"status":"starting","foo":"bar"}`))
	f.Add([]byte(`{"status":"failed","error":"x","queues":[{"type":"t","queued":1}],"workers":[],"jobs":[{"id":"a","exit":3}]}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"started_at":"2026-01-02T03:04:05+01:00"}`))
	f.Add([]byte(" {\"pid\":1e3}"))
	f.Add([]byte(`{"pid":1,"pid":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Parse(b, "status.json")
		if err != nil {
			if d != nil {
				t.Fatal("a document and an error")
			}
			return
		}
		if rest := bytes.TrimLeft(b, " \t\r\n"); len(rest) == 0 || rest[0] != '{' {
			t.Fatalf("parsed %q, which is not a JSON object", b)
		}
		// What parses writes back and parses to the same document.
		once, err := json.Marshal(d)
		if err != nil {
			return // e.g. a year outside 0..9999 cannot be written back
		}
		d2, err := Parse(once, "status.json")
		if err != nil {
			t.Fatalf("re-parse of %s: %v", once, err)
		}
		twice, _ := json.Marshal(d2)
		if !bytes.Equal(once, twice) {
			t.Fatalf("round trip changed the document:\n%s\n%s", once, twice)
		}

		// As an existing status file, it is kept as a launcher's keys
		// (jsd's own replaced) and what jsd writes is a JSON object.
		path := filepath.Join(t.TempDir(), "status.json")
		os.WriteFile(path, b, 0o644)
		sf, _ := OpenFile(path)
		if err := sf.Write(sampleDoc()); err != nil {
			t.Fatal(err)
		}
		out, _ := os.ReadFile(path)
		var m map[string]json.RawMessage
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("status file written over %q is not an object: %v", b, err)
		}
		w, err := Parse(out, "status.json")
		if err != nil || w.PID != 42 || w.Status != Running || w.Error != "" {
			t.Fatalf("status file written over %q reads as %+v, %v", b, w, err)
		}
	})
}
