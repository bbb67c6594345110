// Package status is jsd's status document: what `jsctl status --json` prints
// and what jsd keeps in its status file (plus a launcher's own keys), and the
// atomic writer and tolerant reader of that file.
package status

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"
)

// Daemon states, in the order a daemon goes through them.
const (
	Starting = "starting"
	Running  = "running"
	Stopping = "stopping"
	Stopped  = "stopped"
	Failed   = "failed"
)

// Doc is the status document. Field names are an interface (docs/status.md).
type Doc struct {
	PID       int       `json:"pid"`
	Status    string    `json:"status"`
	Error     string    `json:"error,omitempty"`
	Version   string    `json:"version"`
	StartedAt time.Time `json:"started_at"`
	Socket    string    `json:"socket"`
	FIFO      string    `json:"fifo"`
	Host      string    `json:"host,omitempty"`
	Port      int       `json:"port,omitempty"`
	Slots     Slots     `json:"slots"`
	Leases    []Lease   `json:"leases"`
	Queues    []Queue   `json:"queues"`
	Workers   []Worker  `json:"workers"`
	Jobs      []Job     `json:"jobs"` // the most recent jobs that ended, newest first
	Warnings  []string  `json:"warnings,omitempty"`
	// Cluster: the shared queues (jsd --nats / --nats-embed); absent with
	// the in-memory queues. Queues then counts the cluster's jobs.
	Cluster *Cluster `json:"cluster,omitempty"`
}

// Cluster is this jsd's place among the jsds sharing their queues.
type Cluster struct {
	Name     string `json:"name"`            // this jsd's name in the cluster
	Server   string `json:"nats_server"`     // the NATS server's version
	Replicas int    `json:"replicas"`        // of every stream and bucket
	Peers    []Peer `json:"peers"`           // the jsds that announced themselves lately, this one included
	Error    string `json:"error,omitempty"` // the last refresh's failure
}

// Peer is one jsd of the cluster, as it last announced itself.
type Peer struct {
	Name       string    `json:"name"`
	Version    string    `json:"version,omitempty"`
	Slots      int       `json:"slots"`
	SlotsInUse int       `json:"slots_in_use"`
	Workers    int       `json:"workers"`
	Since      time.Time `json:"since"`
	Seen       time.Time `json:"seen"`
}

// Queue is one job type's queue.
type Queue struct {
	Type          string `json:"type"`
	Queued        int    `json:"queued"`
	Running       int    `json:"running"`
	Workers       int    `json:"workers"`
	NextWaitingMS int64  `json:"next_waiting_ms"` // how long the next job to run has waited
}

// Worker is one connected worker.
type Worker struct {
	ID       uint64    `json:"id"`
	Types    []string  `json:"types"`
	Host     string    `json:"host,omitempty"`
	PID      int       `json:"pid,omitempty"`
	Busy     int       `json:"busy"`
	Capacity int       `json:"capacity"`
	Done     int       `json:"done"`
	Since    time.Time `json:"since"`
}

// Job is one job as jsctl shows it (no arg, no result: they may hold secrets).
type Job struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	State     string    `json:"state"`
	Priority  int       `json:"priority"`
	Attempts  int       `json:"attempts"`
	Submitted time.Time `json:"submitted"`
	RuntimeMS int64     `json:"runtime_ms,omitempty"`
	Exit      *int      `json:"exit,omitempty"`
	Error     string    `json:"error,omitempty"`
}

// Slots are the pool's counts.
type Slots struct {
	Total     int `json:"total"`
	InUse     int `json:"in_use"`
	Free      int `json:"free"`
	Waiting   int `json:"waiting"`
	Leased    int `json:"leased"`
	Reclaimed int `json:"reclaimed"`
}

// Lease is one granted slot lease.
type Lease struct {
	ID      uint64    `json:"id"`
	PID     int       `json:"pid,omitempty"`
	Slots   int       `json:"slots"`
	Command string    `json:"command,omitempty"`
	Since   time.Time `json:"since"`
}

// File writes a status file atomically (PATH.tmp, then rename), keeping every
// key that was in the file when it was opened (a launcher's handshake keys)
// and overwriting only jsd's own.
type File struct {
	path string
	base map[string]json.RawMessage
}

// OpenFile reads the keys already in path, if any. A file that does not parse
// as a JSON object is replaced, and the returned error says so (a warning).
func OpenFile(path string) (*File, error) {
	f := &File{path: path, base: map[string]json.RawMessage{}}
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return f, nil
		}
		return f, fmt.Errorf("read status file: %w", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return f, nil
	}
	if err := json.Unmarshal(b, &f.base); err != nil || f.base == nil {
		f.base = map[string]json.RawMessage{}
		if err == nil {
			err = errors.New("null")
		}
		return f, fmt.Errorf("status file %s is not a JSON object (%v): replacing it", path, err)
	}
	// jsd's own keys are rewritten by every write; one that an earlier jsd
	// wrote and this one leaves out (an "error", a "port") must not stay.
	// Nor may one that differs only in case ("eRror", "ſtatus"):
	// encoding/json reads it as ours.
	for k := range f.base {
		for own := range ownKeys() {
			if strings.EqualFold(k, own) {
				delete(f.base, k)
				break
			}
		}
	}
	return f, nil
}

// ownKeys are the keys of Doc, found once when first needed
// (not at package init: jsrun links this package and starts for every
// command).
var ownKeys = sync.OnceValue(func() map[string]bool {
	keys := map[string]bool{}
	t := reflect.TypeOf(Doc{})
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			keys[name] = true
		}
	}
	return keys
})

// Path is the file's path.
func (f *File) Path() string { return f.path }

// Write replaces the file with the launcher's keys overlaid by v's.
func (f *File) Write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(f.base) > 0 {
		var ours map[string]json.RawMessage
		if err := json.Unmarshal(b, &ours); err != nil {
			return err
		}
		merged := make(map[string]json.RawMessage, len(f.base)+len(ours))
		for k, v := range f.base {
			merged[k] = v
		}
		for k, v := range ours {
			merged[k] = v
		}
		if b, err = json.Marshal(merged); err != nil {
			return err
		}
	}
	b = append(b, '\n')
	tmp := f.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write status file: %w", err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		return fmt.Errorf("write status file: %w", err)
	}
	return nil
}

// Read parses a status file. Unknown keys are ignored; a file that is not a
// JSON object is an error naming the file.
func Read(path string) (*Doc, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(b, path)
}

// Parse parses a status document; name is used in errors.
func Parse(b []byte, name string) (*Doc, error) {
	var d Doc
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) > 0 && t[0] != '{' {
		return nil, fmt.Errorf("status file %s: not a JSON object", filepath.Base(name))
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("status file %s: %w", filepath.Base(name), err)
	}
	return &d, nil
}
