// Package queue holds jobs waiting for a worker: one queue per job type,
// highest priority first, FIFO (by arrival sequence, not a clock) among
// equal priorities. Store is the interface jsd's scheduler uses; Memory is
// the embedded default. A journal and a multi-host backend implement the
// same interface.
package queue

import "container/heap"

// State is where a job is in its life. A job ends exactly once, in one of
// Done, Failed, Cancelled or Lost.
type State uint8

const (
	Queued State = iota
	Running
	Done
	Failed
	Cancelled
	Lost
)

var stateNames = [...]string{"queued", "running", "done", "failed", "cancelled", "lost"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// ParseState reads a state name.
func ParseState(name string) (State, bool) {
	for i, n := range stateNames {
		if n == name {
			return State(i), true
		}
	}
	return 0, false
}

// Ended reports whether s is a final state.
func (s State) Ended() bool { return s >= Done }

// Job is one unit of work, kept compact: a million queued jobs must fit in
// a few hundred MB. The scheduler owns it; the store only orders queued ones.
type Job struct {
	ID       string // canonical id: a JSON string's value, or a number's text
	Type     string
	Arg      []byte // the arg as JSON, exactly as submitted
	Seq      uint64 // arrival order, assigned by the store on first Push
	Priority int32
	Retries  int32 // requeues allowed after a worker dies mid-job (<0: unbounded)
	Attempts int32 // times it was handed to a worker
	index    int32 // position in its type's heap, -1 when not queued
	State    State
	NumID    bool // the id was a JSON number (echoed back as one)

	Submitted int64 // unix nanoseconds
	Started   int64
	Ended     int64
}

// Store is the queued jobs, per type.
type Store interface {
	// Push queues j (again, after a requeue: it keeps its Seq).
	Push(j *Job)
	// Peek returns the next job of a type without removing it.
	Peek(typ string) *Job
	// Pop removes and returns the next job of a type, nil when empty.
	Pop(typ string) *Job
	// Remove takes a queued job out; false when it was not queued.
	Remove(j *Job) bool
	// Len is how many jobs of a type are queued.
	Len(typ string) int
	// Types lists the types with queued jobs.
	Types() []string
}

// Memory is the in-memory store.
type Memory struct {
	seq    uint64
	queues map[string]*jobHeap
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory { return &Memory{queues: map[string]*jobHeap{}} }

func (m *Memory) Push(j *Job) {
	if j.Seq == 0 {
		m.seq++
		j.Seq = m.seq
	}
	h := m.queues[j.Type]
	if h == nil {
		h = &jobHeap{}
		m.queues[j.Type] = h
	}
	heap.Push(h, j)
}

func (m *Memory) Peek(typ string) *Job {
	h := m.queues[typ]
	if h == nil || len(*h) == 0 {
		return nil
	}
	return (*h)[0]
}

func (m *Memory) Pop(typ string) *Job {
	h := m.queues[typ]
	if h == nil || len(*h) == 0 {
		return nil
	}
	return heap.Pop(h).(*Job)
}

func (m *Memory) Remove(j *Job) bool {
	h := m.queues[j.Type]
	if h == nil || j.index < 0 || int(j.index) >= len(*h) || (*h)[j.index] != j {
		return false
	}
	heap.Remove(h, int(j.index))
	return true
}

func (m *Memory) Len(typ string) int {
	if h := m.queues[typ]; h != nil {
		return len(*h)
	}
	return 0
}

func (m *Memory) Types() []string {
	out := make([]string, 0, len(m.queues))
	for t, h := range m.queues {
		if len(*h) > 0 {
			out = append(out, t)
		} else if cap(*h) > 1024 {
			delete(m.queues, t) // give a drained big queue's memory back
		}
	}
	return out
}

// Before reports whether a runs before b: higher priority, then earlier.
func Before(a, b *Job) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	return a.Seq < b.Seq
}

type jobHeap []*Job

func (h jobHeap) Len() int           { return len(h) }
func (h jobHeap) Less(i, j int) bool { return Before(h[i], h[j]) }
func (h jobHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = int32(i), int32(j)
}
func (h *jobHeap) Push(x any) {
	j := x.(*Job)
	j.index = int32(len(*h))
	*h = append(*h, j)
}
func (h *jobHeap) Pop() any {
	old := *h
	n := len(old)
	j := old[n-1]
	old[n-1] = nil
	j.index = -1
	*h = old[:n-1]
	return j
}
