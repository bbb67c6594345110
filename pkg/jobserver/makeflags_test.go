package jobserver

import (
	"strings"
	"testing"
)

func TestParseMakeflags(t *testing.T) {
	none := Auth{R: -1, W: -1}
	cases := []struct {
		name     string
		makeflag string
		want     Auth
		ok       bool
	}{
		{"empty", "", none, false},
		{"letters only", "ks", none, false},
		{"make 4.3", " -j4 --jobserver-auth=3,4", Auth{R: 3, W: 4, Jobs: 4}, true},
		{"make 4.3 with letters", "k -j4 --jobserver-auth=5,6", Auth{R: 5, W: 6, Jobs: 4}, true},
		{"make 4.1 fds with bare -j", " -j --jobserver-fds=3,4", Auth{R: 3, W: 4}, true},
		{"make 4.4 fifo", " -j8 --jobserver-auth=fifo:/tmp/GMfifo123", Auth{Fifo: "/tmp/GMfifo123", R: -1, W: -1, Jobs: 8}, true},
		{"fifo path with comma", "--jobserver-auth=fifo:/tmp/a,b", Auth{Fifo: "/tmp/a,b", R: -1, W: -1}, true},
		{"non-recursive child", " -j4 --jobserver-auth=-2,-2", Auth{R: -1, W: -1, Jobs: 4}, false},
		{"last one wins: fifo", "--jobserver-auth=3,4 --jobserver-auth=fifo:/p", Auth{Fifo: "/p", R: -1, W: -1}, true},
		{"last one wins: fds", "--jobserver-auth=fifo:/p --jobserver-auth=7,8", Auth{R: 7, W: 8}, true},
		{"last one wins: disabled", "--jobserver-auth=fifo:/p --jobserver-auth=-2,-2", none, false},
		{"fds then auth", "--jobserver-fds=3,4 --jobserver-auth=5,6", Auth{R: 5, W: 6}, true},
		{"empty fifo path", "--jobserver-auth=fifo:", none, false},
		{"one descriptor", "--jobserver-auth=3", none, false},
		{"not numbers", "--jobserver-auth=a,b", none, false},
		{"extra comma", "--jobserver-auth=3,4,5", none, false},
		{"variables are not flags", "-j2 -- --jobserver-auth=3,4 X=1", Auth{R: -1, W: -1, Jobs: 2}, false},
		{"-j0 is no count", "-j0 --jobserver-auth=3,4", Auth{R: 3, W: 4}, true},
		{"-jx is no count", "-jx --jobserver-auth=3,4", Auth{R: 3, W: 4}, true},
		{"-j+1 is no count", "-j+1 --jobserver-auth=3,4", Auth{R: 3, W: 4}, true},
		{"last -j wins", "-j2 -j6 --jobserver-auth=3,4", Auth{R: 3, W: 4, Jobs: 6}, true},
		{"tabs and newlines", "\t-j3\n--jobserver-auth=3,4\n", Auth{R: 3, W: 4, Jobs: 3}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseMakeflags(tc.makeflag)
			if ok != tc.ok || got != tc.want {
				t.Fatalf("ParseMakeflags(%q) = %+v, %v; want %+v, %v", tc.makeflag, got, ok, tc.want, tc.ok)
			}
			if ok && got.IsFifo() != (tc.want.Fifo != "") {
				t.Fatalf("IsFifo() = %v", got.IsFifo())
			}
		})
	}
}

func TestWithAuth(t *testing.T) {
	cases := []struct {
		name string
		old  string
		jobs int
		auth string
		want string
	}{
		{"empty", "", 4, "3,4", " -j4 --jobserver-auth=3,4"},
		{"fifo", "", 2, "fifo:/run/js/jobserver.fifo", " -j2 --jobserver-auth=fifo:/run/js/jobserver.fifo"},
		{"letters stay first", "ks", 4, "3,4", "ks -j4 --jobserver-auth=3,4"},
		{"replaces make's own pool", "k -j8 --jobserver-auth=5,6", 3, "3,4", "k -j3 --jobserver-auth=3,4"},
		{"replaces every form", " -j --jobserver-fds=5,6 --jobserver-auth=fifo:/x -j9", 2, "3,4", " -j2 --jobserver-auth=3,4"},
		{"keeps other flags", " --no-print-directory -j8 --jobserver-auth=5,6", 2, "3,4", " -j2 --jobserver-auth=3,4 --no-print-directory"},
		{"keeps variable overrides", "k -j8 --jobserver-auth=5,6 -- CC=gcc -j5", 2, "3,4", "k -j2 --jobserver-auth=3,4 -- CC=gcc -j5"},
		{"override first", "CC=gcc", 2, "3,4", " -j2 --jobserver-auth=3,4 CC=gcc"},
		{"non-numeric -j word kept", "-jfoo", 2, "3,4", " -j2 --jobserver-auth=3,4 -jfoo"},
		{"signed -j word kept", "-j+1", 2, "3,4", " -j2 --jobserver-auth=3,4 -j+1"},
		{"a later letters word does not become first", "-j n", 2, "3,4", " -j2 --jobserver-auth=3,4 n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := WithAuth(tc.old, tc.jobs, tc.auth); got != tc.want {
				t.Fatalf("WithAuth(%q, %d, %q) = %q, want %q", tc.old, tc.jobs, tc.auth, got, tc.want)
			}
		})
	}
}

func TestParseStyle(t *testing.T) {
	for _, s := range []string{"pipe", "fifo"} {
		if got, err := ParseStyle(s); err != nil || string(got) != s {
			t.Errorf("ParseStyle(%q) = %q, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "FIFO", "pipes", "fd"} {
		if _, err := ParseStyle(s); err == nil {
			t.Errorf("ParseStyle(%q): no error", s)
		}
	}
}

// firstWordHasN reports whether make would read s as a dry run: its first
// word, when it is make's single-letter flags, holds an 'n'.
func firstWordHasN(s string) bool {
	f := strings.Fields(s)
	return len(f) > 0 && !strings.HasPrefix(f[0], "-") && !strings.Contains(f[0], "=") && strings.Contains(f[0], "n")
}

func FuzzParseMakeflags(f *testing.F) {
	for _, s := range []string{
		"",
		" -j4 --jobserver-auth=3,4",
		"k -j4 --jobserver-auth=5,6",
		" -j --jobserver-fds=3,4",
		" -j8 --jobserver-auth=fifo:/tmp/GMfifo123",
		" -j4 --jobserver-auth=-2,-2",
		"--jobserver-auth=3,4 --jobserver-auth=fifo:/p",
		"-j2 -- --jobserver-auth=3,4 X=1",
		"ks --no-print-directory -j8 --jobserver-auth=5,6 -- CC=gcc",
		"n -j2",
		"CC=gcc",
		"--jobserver-auth=fifo:",
		"-j 4",
		"-j+1",
		"-j n",
		"\t-j3\n--jobserver-auth=3,4\x00",
	} {
		f.Add(s, 4)
	}
	f.Fuzz(func(t *testing.T, s string, jobs int) {
		a, ok := ParseMakeflags(s)
		if ok {
			if a.IsFifo() == (a.R >= 0) {
				t.Fatalf("%q: %+v names both or neither a fifo and descriptors", s, a)
			}
			if !a.IsFifo() && (a.R < 0 || a.W < 0) {
				t.Fatalf("%q: ok with descriptors %d,%d", s, a.R, a.W)
			}
		}
		if a.Jobs < 0 {
			t.Fatalf("%q: negative jobs %d", s, a.Jobs)
		}
		if jobs < 1 {
			return
		}
		// Whatever a child inherited, the MAKEFLAGS jsrun hands on names
		// exactly our pool, with our count, and keeps it a dry run only if
		// it was one.
		for _, auth := range []string{"3,4", "fifo:/run/js/jobserver.fifo"} {
			out := WithAuth(s, jobs, auth)
			b, ok := ParseMakeflags(out)
			want := Auth{R: 3, W: 4, Jobs: jobs}
			if auth != "3,4" {
				want = Auth{Fifo: "/run/js/jobserver.fifo", R: -1, W: -1, Jobs: jobs}
			}
			if !ok || b != want {
				t.Fatalf("WithAuth(%q, %d, %q) = %q, which parses as %+v, %v; want %+v", s, jobs, auth, out, b, ok, want)
			}
			if firstWordHasN(out) && !firstWordHasN(s) {
				t.Fatalf("WithAuth(%q) = %q starts with a dry-run word", s, out)
			}
		}
	})
}
