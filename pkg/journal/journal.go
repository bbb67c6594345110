// Package journal makes jsd's jobs durable (jsd --journal PATH): every job
// queued, and every detached result not yet fetched, is a record in an
// embedded bbolt database, written with group commit (one fsync for all
// the changes that queued up while the previous commit ran).
//
// bbolt reuses the pages of deleted records, so the file is bounded by the
// peak of live jobs; Open compacts a file that is mostly free space. A file
// bbolt cannot open or read is moved aside (PATH.corrupt-TIME) with a
// warning and jsd starts with an empty journal: never a crash loop.
package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var bucket = []byte("jobs")

// Record is one job as the journal keeps it.
type Record struct {
	ID        string          `json:"id"`
	NumID     bool            `json:"num_id,omitempty"`
	Type      string          `json:"type"`
	Priority  int32           `json:"priority,omitempty"`
	Retries   int32           `json:"retries,omitempty"`
	Attempts  int32           `json:"attempts,omitempty"`
	Seq       uint64          `json:"seq"`
	Arg       json.RawMessage `json:"arg,omitempty"`
	Proto     uint8           `json:"proto,omitempty"`
	State     uint8           `json:"state"`
	Submitted int64           `json:"submitted"`
	Ended     int64           `json:"ended,omitempty"`
	// The outcome of an ended detached job.
	Res   json.RawMessage `json:"res,omitempty"`
	Enc   string          `json:"enc,omitempty"`
	Error string          `json:"error,omitempty"`
	Exit  *int            `json:"exit,omitempty"`
}

type op struct {
	id   string
	data []byte // nil: delete
	done func() // called (from the journal's goroutine) once durable
}

// Journal is an open journal. Put and Delete queue changes; one goroutine
// commits them in batches.
type Journal struct {
	path string
	db   *bolt.DB
	ops  chan op
	wg   sync.WaitGroup

	commits  uint64 // guarded by mu
	batched  uint64 // guarded by mu: changes committed
	mu       sync.Mutex
	closeErr error

	// Callbacks of committed changes, run in order by their own goroutine:
	// a callback may wait for a lock whose holder waits in Put, so the
	// committing goroutine never runs them itself.
	doneMu   sync.Mutex
	doneQ    []func() // guarded by doneMu
	doneWake chan struct{}
	doneEnd  chan struct{}
}

// MaxBatch bounds how many changes one commit carries.
const MaxBatch = 8192

// Open opens (or creates) the journal at path and returns the records in
// it. warn is set when the file had to be moved aside or compacted.
func Open(path string) (j *Journal, recs []Record, warn error, err error) {
	db, recs, err := load(path)
	if err != nil {
		aside := fmt.Sprintf("%s.corrupt-%s", path, time.Now().UTC().Format("20060102T150405"))
		if rerr := os.Rename(path, aside); rerr != nil {
			return nil, nil, nil, fmt.Errorf("journal %s is unreadable (%v) and cannot be moved aside: %w", path, err, rerr)
		}
		warn = fmt.Errorf("journal %s was unreadable (%v): moved it to %s and started with an empty journal", path, err, aside)
		if db, recs, err = load(path); err != nil {
			return nil, nil, warn, err
		}
	}
	if cerr := maybeCompact(db, path); cerr != nil {
		db.Close()
		return nil, nil, warn, cerr
	} else if db2, err := reopenIfCompacted(db, path); err != nil {
		return nil, nil, warn, err
	} else {
		db = db2
	}
	j = &Journal{path: path, db: db, ops: make(chan op, 65536), doneWake: make(chan struct{}, 1), doneEnd: make(chan struct{})}
	j.wg.Add(2)
	go j.run()
	go j.runDone()
	return j, recs, warn, nil
}

// load opens the database and reads every record, turning bbolt's panics
// on a damaged file into errors.
func load(path string) (db *bolt.DB, recs []Record, err error) {
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				db.Close()
			}
			db, recs, err = nil, nil, fmt.Errorf("damaged: %v", r)
		}
	}()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, err
	}
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, nil, fmt.Errorf("journal %s is locked by another process", path)
		}
		return nil, nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("record %q: %w", k, err)
			}
			recs = append(recs, r)
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, recs, nil
}

// maybeCompact rewrites the file when most of it is free pages (a burst of
// jobs that has drained): a fresh copy of the live records, renamed over.
func maybeCompact(db *bolt.DB, path string) error {
	fi, err := os.Stat(path)
	if err != nil || fi.Size() < 64<<20 {
		return nil
	}
	var live int64
	db.View(func(tx *bolt.Tx) error {
		live = int64(tx.Bucket(bucket).Stats().LeafInuse + tx.Bucket(bucket).Stats().BranchInuse)
		return nil
	})
	if live*4 > fi.Size() {
		return nil
	}
	tmp := path + ".compact"
	os.Remove(tmp)
	dst, err := bolt.Open(tmp, 0o600, nil)
	if err != nil {
		return err
	}
	if err := bolt.Compact(dst, db, 1<<20); err != nil {
		dst.Close()
		os.Remove(tmp)
		return fmt.Errorf("compact journal: %w", err)
	}
	dst.Close()
	return os.Rename(tmp, path+".compacted")
}

func reopenIfCompacted(db *bolt.DB, path string) (*bolt.DB, error) {
	if _, err := os.Stat(path + ".compacted"); err != nil {
		return db, nil
	}
	db.Close()
	if err := os.Rename(path+".compacted", path); err != nil {
		return nil, err
	}
	return bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, FreelistType: bolt.FreelistMapType})
}

// Put records r (replacing a record with its id); done, if not nil, runs
// once the change is on disk.
func (j *Journal) Put(r *Record, done func()) {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // a Record always encodes
	}
	j.ops <- op{id: r.ID, data: b, done: done}
}

// Delete removes the record of id.
func (j *Journal) Delete(id string) { j.ops <- op{id: id} }

// run commits queued changes in batches: one transaction and one fsync for
// everything that queued up while the previous commit ran.
func (j *Journal) run() {
	defer j.wg.Done()
	batch := make([]op, 0, MaxBatch)
	for first := range j.ops {
		batch = append(batch[:0], first)
	fill:
		for len(batch) < MaxBatch {
			select {
			case o, ok := <-j.ops:
				if !ok {
					break fill
				}
				batch = append(batch, o)
			default:
				break fill
			}
		}
		err := j.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucket)
			for _, o := range batch {
				var err error
				if o.data == nil {
					err = b.Delete([]byte(o.id))
				} else {
					err = b.Put([]byte(o.id), o.data)
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		j.mu.Lock()
		j.commits++
		j.batched += uint64(len(batch))
		if err != nil && j.closeErr == nil {
			j.closeErr = err
		}
		j.mu.Unlock()
		j.doneMu.Lock()
		for _, o := range batch {
			if o.done != nil {
				j.doneQ = append(j.doneQ, o.done)
			}
		}
		j.doneMu.Unlock()
		select {
		case j.doneWake <- struct{}{}:
		default:
		}
	}
	close(j.doneEnd)
}

// runDone runs the callbacks of committed changes, in commit order.
func (j *Journal) runDone() {
	defer j.wg.Done()
	for {
		select {
		case <-j.doneWake:
		case <-j.doneEnd:
			j.drainDone()
			return
		}
		j.drainDone()
	}
}

func (j *Journal) drainDone() {
	for {
		j.doneMu.Lock()
		q := j.doneQ
		j.doneQ = nil
		j.doneMu.Unlock()
		if len(q) == 0 {
			return
		}
		for _, f := range q {
			f()
		}
	}
}

// Stats reports commits and changes committed so far.
func (j *Journal) Stats() (commits, changes uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.commits, j.batched
}

// Close commits what is queued and closes the file.
func (j *Journal) Close() error {
	close(j.ops)
	j.wg.Wait()
	err := j.db.Close()
	if j.closeErr != nil {
		return j.closeErr
	}
	return err
}
