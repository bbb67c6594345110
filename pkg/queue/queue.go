// Package queue holds jobs waiting for a worker: one queue per job type,
// highest priority first, FIFO (by arrival sequence, not a clock) among
// equal priorities. Store is the interface jsd's scheduler uses; Memory is
// the embedded default.
//
// A million queued jobs must fit in little memory, so Memory keeps each one
// as a fixed-size record in a pointer-free slab (64 bytes), its id and arg
// in a pointer-free blob arena, and finds it by id through an open-addressed
// table of 4-byte references. The garbage collector has next to nothing to
// scan in it, and nothing is allocated per job.
package queue

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

// Job is the scheduler's view of one unit of work. The scheduler owns it;
// the store copies what it needs when the job is pushed.
type Job struct {
	ID       string // canonical id: a JSON string's value, or a number's text
	Type     string
	Arg      []byte // the arg as JSON, exactly as submitted
	Seq      uint64 // arrival order, assigned by the store on first Push
	Priority int32
	Retries  int32 // requeues allowed after a worker dies mid-job (<0: unbounded)
	Attempts int32 // times it was handed to a worker
	Ref      Ref   // its place in the store while queued, else 0
	State    State
	NumID    bool // the id was a JSON number (echoed back as one)

	Submitted int64 // unix nanoseconds
	Started   int64
	Ended     int64
}

// Ref is a queued job's place in a store; 0 is none. It is valid from the
// Push that returned it until the job leaves the store (Remove).
type Ref uint32

// Owner is who a queued job belongs to, as a small number the scheduler
// hands out (0: nobody); the store keeps each owner's jobs in a list.
type Owner uint32

// Store is the queued jobs, per type.
type Store interface {
	// Push queues j (again, after a requeue: it keeps its Seq) for owner,
	// with a byte of the scheduler's own (tag). With data false the store
	// keeps only the job's place in the order: the scheduler holds the job
	// itself, and Find and Load do not know it.
	Push(j *Job, owner Owner, tag uint8, data bool) Ref
	// Keep adds the data of a job pushed without it (j.Ref is its place).
	Keep(j *Job)
	// Peek returns the next job of a type without removing it (0: none).
	Peek(typ string) Ref
	// Before reports whether queued job a runs before b.
	Before(a, b Ref) bool
	// Remove takes a queued job out and returns its owner.
	Remove(r Ref) Owner
	// Load fills j with a queued job kept with its data (ID, Type, Arg,
	// Seq, Priority, Retries, Attempts, NumID, Submitted, Ref) and returns
	// its owner and tag.
	Load(r Ref, j *Job) (Owner, uint8)
	// Find returns the queued job with that id kept with its data, or 0.
	Find(id string) Ref
	// Submitted is when a queued job was submitted.
	Submitted(r Ref) int64
	// Len is how many jobs of a type are queued; Total of all types.
	Len(typ string) int
	Total() int
	// Types lists the types with queued jobs.
	Types() []string
	// Each calls f for every job queued of a type ("": all), in no order;
	// f must not change the store.
	Each(typ string, f func(Ref))
	// OwnerFirst is one of owner's queued jobs (0: none); OwnerLen how many.
	OwnerFirst(o Owner) Ref
	OwnerLen(o Owner) int
}

var _ Store = (*Memory)(nil)

// Before reports whether a runs before b: higher priority, then earlier.
func Before(a, b *Job) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	return a.Seq < b.Seq
}
