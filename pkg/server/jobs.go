package server

import (
	"container/list"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/js-toolkit/js/pkg/journal"
	"github.com/js-toolkit/js/pkg/metrics"
	"github.com/js-toolkit/js/pkg/queue"
	"github.com/js-toolkit/js/pkg/status"
	"github.com/js-toolkit/js/pkg/wire"
)

// proto is the protocol a job came in on. It decides the retry rule (the
// seeds' behaviour follows their protocol) and how outcomes are written.
type proto uint8

const (
	protoNative proto = iota // native JSON lines with any of our extensions
	protoDeputy              // a plain deputy "do"
	protoGloom
	protoHTTP
)

// peer is a connection of any protocol as the scheduler sees it. All
// methods are called from the loop and must not block.
type peer interface {
	// sendJob hands j to this peer, a worker.
	sendJob(j *job)
	// sendCancel asks this peer, a worker that said it obeys cancel, to
	// stop running j with sig.
	sendCancel(j *job, sig string)
	// sendOutcome tells this peer how j ended (as its submitter, or as one
	// who waits for it).
	sendOutcome(j *job, req json.RawMessage)
}

// outcome is what a worker reported for a job.
type outcome struct {
	res   json.RawMessage
	enc   string
	err   string
	exit  *int
	state queue.State
}

// job is the scheduler's record of one job.
//
// A queued job has no job record as a rule: the store keeps it, compact and
// pointer-free (a million queued jobs must fit), and a record is made when it
// leaves the store or someone asks for it by id (lookup). Only a queued job
// that holds what the store cannot (waiters, an acknowledgement pending, a
// past attempt) keeps its record while queued, in jobState.qhot.
type job struct {
	queue.Job
	proto    proto
	gone     bool // ended and reported while its worker still runs it
	awaitAck bool // its acknowledgement waits for the journal or the shared queue
	fetched  bool // taken from the shared queue for a local worker (shared.go)
	owner    peer // the submitter; nil when detached
	worker   *worker
	out      *outcome
	waiters  *[]jobWaiter // who waits for it besides its submitter
	afterAck func()       // its outcome, held until the acknowledgement is out

	onext, oprev *job // its submitter's other jobs not in the store (jobState.owned)
}

// coldable reports whether the store may keep j alone while it is queued:
// it holds nothing the store does not.
func (j *job) coldable() bool {
	return j.waiters == nil && !j.awaitAck && j.afterAck == nil && j.out == nil && !j.gone &&
		j.worker == nil && !j.fetched && j.Attempts == 0 && j.Started == 0
}

// waitsFor reports whether p still expects an outcome: it owns live jobs or
// waits for one.
func (js *jobState) waitsFor(p peer) bool {
	if js.owns(p) {
		return true
	}
	for _, j := range js.waits[p] {
		if js.live[j.ID] == j && !j.gone {
			return true
		}
	}
	return false
}

// owns reports whether p submitted jobs that have not ended.
func (js *jobState) owns(p peer) bool {
	return js.owned[p] != nil || js.store.OwnerLen(js.ownerIDs[p]) > 0
}

// own puts j on its submitter's list (of jobs not in the store).
func (js *jobState) own(j *job) {
	if j.owner == nil {
		return
	}
	if head := js.owned[j.owner]; head != nil {
		j.onext, head.oprev = head, j
	}
	js.owned[j.owner] = j
}

// unown takes j off its submitter's list.
func (js *jobState) unown(j *job) {
	if j.owner == nil || j.oprev == nil && js.owned[j.owner] != j {
		return // not on it
	}
	if j.oprev != nil {
		j.oprev.onext = j.onext
	} else if j.onext != nil {
		js.owned[j.owner] = j.onext
	} else {
		delete(js.owned, j.owner)
	}
	if j.onext != nil {
		j.onext.oprev = j.oprev
	}
	j.onext, j.oprev = nil, nil
}

// addWaiter makes p wait for j's end.
func (j *job) addWaiter(p peer, req json.RawMessage) {
	if j.waiters == nil {
		j.waiters = new([]jobWaiter)
	}
	*j.waiters = append(*j.waiters, jobWaiter{p: p, req: req})
}

// dropWaiter stops p waiting for j.
func (j *job) dropWaiter(p peer) {
	if j.waiters == nil {
		return
	}
	*j.waiters = dropWaiters(*j.waiters, p)
	if len(*j.waiters) == 0 {
		j.waiters = nil
	}
}

type jobWaiter struct {
	p   peer
	req json.RawMessage
}

// RawID is the id as it goes on the wire.
func (j *job) RawID() json.RawMessage {
	if j.NumID {
		return json.RawMessage(j.ID)
	}
	b, _ := json.Marshal(j.ID)
	return b
}

// worker is a peer that serves job types.
type worker struct {
	p         peer
	id        uint64
	types     []string
	capacity  int
	canCancel bool
	running   map[string]*job
	elems     map[string]*list.Element // its place in each type's idle list
	done      int
	host      string
	pid       int
	since     time.Time
	proto     proto
	draining  bool // takes no new jobs (SIGTERM to jsworker)
}

// jobState is the job half of the scheduler, guarded by Server.mu.
type jobState struct {
	store    *queue.Memory
	live     map[string]*job // the records of running jobs (or cancelled, still on their workers) and of queued ones in qhot
	qhot     map[queue.Ref]*job
	ownerIDs map[peer]queue.Owner // the submitters of jobs in the store, by their number there
	leaving  map[peer]bool        // gone submitters whose queued jobs dropStored is still dropping
	owners   []peer               // by number; 0 is nobody
	freeIDs  []queue.Owner
	workers  map[peer]*worker
	idle     map[string]*list.List // type -> workers with free capacity, longest idle first
	owned    map[peer]*job         // a submitter's jobs: the head of a list through job.onext
	waits    map[peer][]*job       // jobs a peer waits for (jsctl wait), besides its own
	running  map[string]int        // type -> running jobs
	detached map[string]*job
	kept     []*job // detached results in the order they ended (for expiry)
	recent   []*job // the last jobs that ended, newest last
	seq      uint64 // assigned ids
	arrival  uint64 // arrival order of jobs
	wseq     uint64
	c        metrics.Counters
	hist     metrics.Set

	journal *journal.Journal          // nil: jobs live in memory only
	sh      *shared                   // nil: the queues are here; else in NATS JetStream (shared.go)
	call    func(func(st *loopState)) // runs a function on the state, under Server.mu

	deputyRetries int               // -1: unbounded, as deputy
	typeNames     map[string]string // one copy of each job type's name, shared by its jobs
	resultTTL     time.Duration
	maxKept       int
}

const recentJobs = 20

func (js *jobState) init(deputyRetries int, ttl time.Duration, maxKept int) {
	js.store = queue.NewMemory()
	js.live = map[string]*job{}
	js.qhot = map[queue.Ref]*job{}
	js.ownerIDs = map[peer]queue.Owner{}
	js.leaving = map[peer]bool{}
	js.owners = []peer{nil}
	js.workers = map[peer]*worker{}
	js.idle = map[string]*list.List{}
	js.owned = map[peer]*job{}
	js.waits = map[peer][]*job{}
	js.running = map[string]int{}
	js.detached = map[string]*job{}
	js.deputyRetries, js.resultTTL, js.maxKept = deputyRetries, ttl, maxKept
	js.typeNames = map[string]string{}
}

// busy reports whether any job is queued or running (for idleness).
func (js *jobState) busy() bool {
	return len(js.live) > 0 || js.store.Total() > 0 || js.sh != nil && len(js.sh.fetched) > 0
}

// liveCount is how many jobs are queued or running (or cancelled, still on
// their workers).
func (js *jobState) liveCount() int {
	return len(js.live) + js.store.Total() - len(js.qhot)
}

// exists reports whether a job with that id is queued or running (or
// cancelled, still on its worker).
func (js *jobState) exists(id string) bool {
	return js.live[id] != nil || js.store.Find(id) != 0
}

// lookup returns the live job with that id, nil if none. A queued job the
// store keeps alone gets its record (and keeps it while it is queued).
func (js *jobState) lookup(id string) *job {
	if j := js.live[id]; j != nil {
		return j
	}
	r := js.store.Find(id)
	if r == 0 {
		return nil
	}
	j := js.load(r)
	js.qhot[r] = j
	return j
}

// load makes the record of a queued job the store keeps alone.
func (js *jobState) load(r queue.Ref) *job {
	j := &job{}
	o, tag := js.store.Load(r, &j.Job)
	j.proto, j.owner, j.State = proto(tag), js.owners[o], queue.Queued
	js.live[j.ID] = j
	return j
}

// take removes a queued job from the store and returns its record.
func (js *jobState) take(r queue.Ref) *job {
	j := js.qhot[r]
	if j != nil {
		delete(js.qhot, r)
	} else {
		j = js.load(r)
	}
	o := js.store.Remove(r)
	j.Ref = 0
	if o != 0 && js.store.OwnerLen(o) == 0 { // its submitter has no more jobs in the store
		delete(js.ownerIDs, js.owners[o])
		js.owners[o] = nil
		js.freeIDs = append(js.freeIDs, o)
	}
	js.own(j)
	return j
}

// cool leaves a queued job that no longer needs its record to the store.
func (js *jobState) cool(j *job) {
	if j.Ref != 0 && js.qhot[j.Ref] == j && j.coldable() {
		js.store.Keep(&j.Job)
		delete(js.qhot, j.Ref)
		delete(js.live, j.ID)
	}
}

// dequeue takes j out of the store if it is there.
func (js *jobState) dequeue(j *job) {
	if j.Ref != 0 {
		js.take(j.Ref)
	}
}

// ownerID is p's number in the store.
func (js *jobState) ownerID(p peer) queue.Owner {
	if p == nil {
		return 0
	}
	if o, ok := js.ownerIDs[p]; ok {
		return o
	}
	var o queue.Owner
	if n := len(js.freeIDs); n > 0 {
		o = js.freeIDs[n-1]
		js.freeIDs = js.freeIDs[:n-1]
		js.owners[o] = p
	} else {
		o = queue.Owner(len(js.owners))
		js.owners = append(js.owners, p)
	}
	js.ownerIDs[p] = o
	return o
}

// submission is a job as a protocol adapter hands it in.
type submission struct {
	id       json.RawMessage // nil: assign one
	typ      string
	priority int
	retries  int
	detach   bool
	arg      json.RawMessage
	proto    proto
}

// canonID turns a wire id into its canonical key. Strings and numbers are
// ids; "5" and 5 name the same job.
func canonID(raw json.RawMessage) (id string, num bool, err error) {
	if len(raw) == 0 {
		return "", false, nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false, err
		}
		if s == "" {
			return "", false, fmt.Errorf("id must not be empty")
		}
		return s, false, nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return "", false, err
		}
		return n.String(), true, nil
	}
	return "", false, fmt.Errorf("id must be a string or a number")
}

// submit queues a job for p (nil owner when detached). It returns the job,
// or an error code and message.
func (js *jobState) submit(p peer, s submission) (*job, string, string) {
	if s.typ == "" {
		return nil, wire.CodeBadRequest, `missing "type"`
	}
	id, num, err := canonID(s.id)
	if err != nil {
		return nil, wire.CodeBadRequest, "bad id: " + err.Error()
	}
	if id == "" {
		for {
			js.seq++
			id = "j" + strconv.FormatUint(js.seq, 10)
			if js.sh != nil {
				id = js.sh.autoID(js.seq)
			}
			if !js.exists(id) && js.detached[id] == nil {
				break
			}
		}
	} else if js.exists(id) {
		return nil, wire.CodeIDExists, fmt.Sprintf("a job with id %s is queued or running", id)
	} else if js.detached[id] != nil {
		// An unfetched detached result under that id: the id is not free.
		return nil, wire.CodeIDExists, fmt.Sprintf("job %s ended and its result waits for 'jsctl wait %s'", id, id)
	}
	if len(s.arg) == 0 {
		s.arg = json.RawMessage("null")
	}
	j := &job{Job: queue.Job{ID: id, NumID: num, Type: js.typeName(s.typ), Arg: s.arg,
		Priority: int32(s.priority), Retries: int32(s.retries), Submitted: time.Now().UnixNano()},
		proto: s.proto}
	js.arrival++
	j.Seq = js.arrival
	if !s.detach {
		j.owner = p
		js.own(j)
	}
	js.live[id] = j
	js.c.JobsAdded++
	if js.sh != nil {
		js.sh.from[j] = p // accept hands it to the cluster in p's order
	}
	return j, "", ""
}

// maxTypeNames bounds the interned type names (a client inventing types
// must not grow them without end).
const maxTypeNames = 10000

// typeName returns the shared copy of a type's name: a million queued jobs
// of one type keep one string, not a million (each decoded line makes its
// own).
func (js *jobState) typeName(t string) string {
	if n, ok := js.typeNames[t]; ok {
		return n
	}
	if len(js.typeNames) < maxTypeNames {
		t = strings.Clone(t)
		js.typeNames[t] = t
	}
	return t
}

// enqueue puts a submitted or requeued job where it belongs: straight to an
// idle worker when none of its type waits, else into the store (which keeps
// it alone, without its record, when it may).
func (js *jobState) enqueue(j *job) {
	j.State = queue.Queued
	if js.sh != nil {
		return // in the shared queue since accept
	}
	if l := js.idle[j.Type]; l != nil && l.Len() > 0 && js.store.Len(j.Type) == 0 {
		js.assign(l.Front().Value.(*worker), j)
		return
	}
	js.unown(j) // the store keeps its submitter's queued jobs
	cold := j.coldable()
	js.store.Push(&j.Job, js.ownerID(j.owner), uint8(j.proto), cold)
	if cold {
		delete(js.live, j.ID)
	} else {
		js.qhot[j.Ref] = j
	}
}

// assign gives j to w.
func (js *jobState) assign(w *worker, j *job) {
	j.State = queue.Running
	j.worker = w
	j.Attempts++
	j.Started = time.Now().UnixNano()
	js.hist.Observe(metrics.JobQueueWait, j.Type, time.Duration(j.Started-j.Submitted))
	w.running[j.ID] = j
	js.running[j.Type]++
	js.c.JobsDispatched++
	if len(w.running) >= w.capacity {
		js.setBusy(w)
	} else {
		js.rotate(w)
	}
	w.p.sendJob(j)
}

// best is the next job among w's types: highest priority, then oldest.
func (js *jobState) best(w *worker) queue.Ref {
	var best queue.Ref
	for _, t := range w.types {
		if q := js.store.Peek(t); q != 0 && (best == 0 || js.store.Before(q, best)) {
			best = q
		}
	}
	return best
}

// fill gives w jobs while it has room, and marks it idle when none wait.
func (js *jobState) fill(w *worker) {
	if w.draining {
		js.setBusy(w)
		return
	}
	if js.sh != nil {
		if len(w.running) < w.capacity {
			js.sh.room(w)
		}
		return
	}
	dropped := 0
	for len(w.running) < w.capacity {
		r := js.best(w)
		if r == 0 {
			js.setIdle(w)
			return
		}
		j := js.take(r)
		if js.leaving[j.owner] { // its submitter is gone: being dropped (dropStored)
			js.dropOwned(j.owner, j)
			if dropped++; dropped == dropChunk {
				// A chunk per hold of the lock, as dropStored: w (neither
				// idle nor full) is filled again after others had it.
				dropLater(func() {
					js.call(func(st *loopState) {
						if st.jobs.workers[w.p] == w {
							st.jobs.fill(w)
						}
					})
				})
				return
			}
			continue
		}
		js.assign(w, j)
	}
}

func (js *jobState) setIdle(w *worker) {
	for _, t := range w.types {
		if _, ok := w.elems[t]; ok {
			continue
		}
		l := js.idle[t]
		if l == nil {
			l = list.New()
			js.idle[t] = l
		}
		w.elems[t] = l.PushBack(w)
	}
}

func (js *jobState) setBusy(w *worker) {
	for t, e := range w.elems {
		js.idle[t].Remove(e)
		delete(w.elems, t)
	}
}

// rotate moves w to the back of its idle lists: idle workers are served in
// turn.
func (js *jobState) rotate(w *worker) {
	for t, e := range w.elems {
		js.idle[t].MoveToBack(e)
	}
}

// register makes p a worker of types (added to those it had).
func (js *jobState) register(p peer, types []string, capacity int, canCancel bool, pr proto, host string, pid int) *worker {
	w := js.workers[p]
	if w == nil {
		js.wseq++
		w = &worker{p: p, id: js.wseq, running: map[string]*job{}, elems: map[string]*list.Element{}, since: time.Now(), proto: pr}
		js.workers[p] = w
		js.c.WorkersAdded++
	}
	if capacity > 0 {
		w.capacity = capacity
	} else if w.capacity == 0 {
		w.capacity = 1 // deputy's rule: one job at a time
	}
	w.canCancel = w.canCancel || canCancel
	if host != "" {
		w.host = host
	}
	if pid > 0 {
		w.pid = pid
	}
	for _, t := range types {
		if t != "" && !contains(w.types, t) {
			w.types = append(w.types, t)
		}
	}
	js.setBusy(w) // re-enter the idle lists with the new types
	js.fill(w)
	return w
}

// drain stops giving p new jobs; the ones it runs go on.
func (js *jobState) drain(p peer) bool {
	w := js.workers[p]
	if w == nil {
		return false
	}
	w.draining = true
	js.setBusy(w)
	return true
}

// setTypes replaces a worker's types (gloom's re-join switches type).
func (js *jobState) setTypes(p peer, types []string, pr proto) {
	if w := js.workers[p]; w != nil {
		js.setBusy(w)
		w.types = nil
	}
	js.register(p, types, 1, false, pr, "", 0)
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// result records what worker p reported for job id.
func (js *jobState) result(p peer, id string, o *outcome) (string, string) {
	w := js.workers[p]
	var j *job
	if w != nil {
		j = w.running[id]
	}
	if j == nil {
		return wire.CodeNotYours, fmt.Sprintf("this connection does not hold job %s", id)
	}
	delete(w.running, id)
	js.running[j.Type]--
	w.done++
	js.hist.Observe(metrics.JobRun, j.Type, time.Since(time.Unix(0, j.Started)))
	j.worker = nil
	if j.fetched {
		js.sh.done(js, j, o)
	} else if j.gone {
		delete(js.live, j.ID) // cancelled: reported already, the answer is dropped
	} else {
		js.finish(j, o)
	}
	js.fill(w)
	return "", ""
}

// finish ends j with o and tells whoever waits for it; a detached job
// nobody waits for keeps its result for 'jsctl wait'.
func (js *jobState) finish(j *job, o *outcome) { js.end(j, o, true) }

// end is finish; keep=false drops the result when nobody is there to take
// it (its submitter disconnected).
func (js *jobState) end(j *job, o *outcome, keep bool) {
	js.dequeue(j) // (a queued job is taken out of the store before it ends)
	j.State = o.state
	j.Ended = time.Now().UnixNano()
	j.out = o
	js.count(o.state)
	switch {
	case j.worker != nil:
		j.gone = true // its worker still runs it: keep the id until it answers
	case j.awaitAck:
		// Its acknowledgement waits for the journal, and its outcome behind
		// it: the id stays taken until both are out (accept frees it).
		j.gone = true
	default:
		delete(js.live, j.ID)
	}
	owner := j.owner
	js.unown(j)
	var waiters []jobWaiter
	if j.waiters != nil {
		waiters = *j.waiters
		j.waiters = nil
	}
	kept := keep && owner == nil && len(waiters) == 0
	if kept {
		js.detached[j.ID] = j
		js.kept = append(js.kept, j)
		if len(js.kept) > js.maxKept {
			js.expire(js.kept[0])
		}
	}
	if js.journal != nil {
		if kept {
			js.journal.Put(record(j), nil)
		} else {
			js.journal.Delete(j.ID)
		}
	}
	deliver := func() {
		if owner != nil {
			owner.sendOutcome(j, nil)
		}
		for _, w := range waiters {
			w.p.sendOutcome(j, w.req)
		}
	}
	if j.awaitAck {
		j.afterAck = deliver // the acknowledgement goes out first
	} else {
		deliver()
	}
	js.addRecent(j)
}

// count adds an outcome to the counters.
func (js *jobState) count(st queue.State) {
	switch st {
	case queue.Done:
		js.c.JobsDone++
	case queue.Failed:
		js.c.JobsFailed++
	case queue.Cancelled:
		js.c.JobsCancelled++
	case queue.Lost:
		js.c.JobsLost++
	}
}

// addRecent remembers an ended job for the status.
func (js *jobState) addRecent(j *job) {
	js.recent = append(js.recent, j)
	if len(js.recent) > 2*recentJobs {
		js.recent = append(js.recent[:0], js.recent[len(js.recent)-recentJobs:]...)
	}
}

// withdraw forgets a job that was never accepted (the shared queue refused
// it): no outcome, no count.
func (js *jobState) withdraw(j *job) {
	if js.live[j.ID] == j {
		delete(js.live, j.ID)
	}
	js.unown(j)
	j.owner, j.waiters, j.afterAck = nil, nil, nil
	js.c.JobsAdded--
}

// accept acknowledges a submitted job: at once, with a journal once the
// job is on disk (group commit), with the shared queue once the cluster has
// it (or reject, if it refused it). ack and reject may be nil (deputy asks
// for neither).
func (js *jobState) accept(j *job, ack func(), reject func(code, msg string)) {
	if js.sh != nil {
		js.sh.submit(js, j, ack, reject)
		return
	}
	if js.journal == nil {
		if ack != nil {
			ack()
		}
		return
	}
	j.awaitAck = true
	js.journal.Put(record(j), func() {
		js.call(func(*loopState) {
			j.awaitAck = false
			if ack != nil {
				ack()
			}
			if f := j.afterAck; f != nil {
				j.afterAck = nil
				f()
			}
			js.acked(j)
			js.cool(j)
		})
	})
}

// acked frees the id of a job that ended while its acknowledgement was
// still out (end keeps it taken until then): the journal's commit, or the
// shared queue's taking it, came after its outcome.
func (js *jobState) acked(j *job) {
	if j.gone && j.worker == nil && js.live[j.ID] == j {
		delete(js.live, j.ID)
	}
}

// record is j as the journal keeps it.
func record(j *job) *journal.Record {
	r := &journal.Record{ID: j.ID, NumID: j.NumID, Type: j.Type, Priority: j.Priority, Retries: j.Retries,
		Attempts: j.Attempts, Seq: j.Seq, Arg: j.Arg, Proto: uint8(j.proto), State: uint8(j.State),
		Submitted: j.Submitted, Ended: j.Ended}
	if o := j.out; o != nil {
		r.Res, r.Enc, r.Error, r.Exit = o.res, o.enc, o.err, o.exit
	}
	return r
}

// restore brings back the jobs of a journal: the ones that had not ended are
// queued again, detached (their submitters were connected to the jsd that
// died: 'jsctl wait ID' re-attaches); ended detached results are kept.
func (js *jobState) restore(recs []journal.Record) (queued, results int) {
	sort.Slice(recs, func(a, b int) bool { return recs[a].Seq < recs[b].Seq })
	for i := range recs {
		r := &recs[i]
		j := &job{Job: queue.Job{ID: r.ID, NumID: r.NumID, Type: r.Type, Arg: r.Arg, Seq: r.Seq,
			Priority: r.Priority, Retries: r.Retries, Attempts: r.Attempts, Submitted: r.Submitted},
			proto: proto(r.Proto)}
		js.arrival = max(js.arrival, r.Seq)
		if st := queue.State(r.State); st.Ended() {
			j.State, j.Ended = st, r.Ended
			j.out = &outcome{state: st, res: r.Res, enc: r.Enc, err: r.Error, exit: r.Exit}
			js.detached[j.ID] = j
			js.kept = append(js.kept, j)
			results++
			continue
		}
		js.live[j.ID] = j
		js.enqueue(j)
		queued++
	}
	return queued, results
}

// expire drops a kept detached result.
func (js *jobState) expire(j *job) {
	if js.detached[j.ID] == j {
		delete(js.detached, j.ID)
		js.c.ResultsExpired++
		if js.journal != nil {
			js.journal.Delete(j.ID)
		}
	}
	js.kept = js.kept[1:]
}

// sweep expires detached results older than the TTL.
func (js *jobState) sweep(now time.Time) {
	cut := now.Add(-js.resultTTL).UnixNano()
	for len(js.kept) > 0 {
		j := js.kept[0]
		if js.detached[j.ID] == j && j.Ended > cut {
			return
		}
		js.expire(j)
	}
}

// cancel cancels a queued or running job. ack, if not nil, is called once
// the cancel is known to succeed and before the job's outcome goes out (an
// acknowledgement is written before any message it causes). With the
// shared queue the cancel goes through the cluster: it returns no error at
// once, and ack or fail is called later.
func (js *jobState) cancel(id, sig string, ack func(), fail func(code, msg string)) (string, string) {
	if js.sh != nil {
		js.sh.cancel(id, sig, ack, fail)
		return "", ""
	}
	j := js.lookup(id)
	if j == nil || j.gone {
		if js.detached[id] != nil || j != nil || js.ended(id) {
			return wire.CodeEnded, fmt.Sprintf("job %s has ended already", id)
		}
		return wire.CodeNotFound, fmt.Sprintf("no job %s is queued or running", id)
	}
	if ack != nil {
		ack()
	}
	if j.State == queue.Queued {
		js.dequeue(j)
	} else if j.worker != nil && j.worker.canCancel {
		j.worker.p.sendCancel(j, sig)
	}
	js.finish(j, &outcome{state: queue.Cancelled, err: "cancelled"})
	return "", ""
}

// ended reports whether a recent job with that id has ended.
func (js *jobState) ended(id string) bool {
	for i := len(js.recent) - 1; i >= 0; i-- {
		if js.recent[i].ID == id {
			return true
		}
	}
	return false
}

// wait sends p how job id ends (at once if it has ended). With the shared
// queue, a job this jsd does not hold is waited for in the cluster (fail
// reports an error later; nil fail: not asked).
func (js *jobState) wait(p peer, id string, req json.RawMessage, fail func(code, msg string)) (string, string) {
	if j := js.lookup(id); j != nil && !j.gone {
		j.addWaiter(p, req)
		js.waits[p] = append(js.waits[p], j)
		return "", ""
	}
	if js.sh != nil {
		if fail == nil {
			return wire.CodeNotFound, fmt.Sprintf("job %s is not held by this jsd: ask with 'jsctl wait %s'", id, id)
		}
		js.sh.wait(p, id, req, fail)
		return "", ""
	}
	if j := js.detached[id]; j != nil {
		p.sendOutcome(j, req)
		delete(js.detached, id) // fetched: the id is free again
		if js.journal != nil {
			js.journal.Delete(id)
		}
		return "", ""
	}
	if js.ended(id) {
		return wire.CodeNotFound, fmt.Sprintf("job %s has ended and its result went to its submitter (or was fetched already)", id)
	}
	return wire.CodeNotFound, fmt.Sprintf("no job %s (never submitted, or its result was fetched or expired)", id)
}

// dropPeer ends everything a closed connection had: as a submitter, its
// queued jobs are removed and its running jobs cancelled on their workers;
// as a worker, the jobs it ran are requeued or lost; as a waiter, it waits
// no more.
func (js *jobState) dropPeer(p peer) {
	js.dropStored(p)
	var mine []*job
	for j := js.owned[p]; j != nil; j = j.onext {
		mine = append(mine, j)
	}
	for _, j := range mine {
		js.dropOwned(p, j)
	}
	for _, j := range js.waits[p] {
		j.dropWaiter(p)
	}
	delete(js.waits, p)
	if js.sh != nil {
		js.sh.dropPeer(p)
	}
	w := js.workers[p]
	if w == nil {
		return
	}
	delete(js.workers, p)
	js.setBusy(w)
	if js.sh != nil {
		js.sh.workerGone(js, w)
	}
	for _, j := range w.running {
		if j.fetched {
			continue // given back to the shared queue
		}
		js.running[j.Type]--
		j.worker = nil
		if j.gone {
			delete(js.live, j.ID)
			continue
		}
		if js.mayRetry(j) {
			js.c.JobsReassigned++
			if j.proto == protoGloom {
				j.Priority++ // gloom sends it back one priority higher
			}
			js.enqueue(j)
			continue
		}
		msg := fmt.Sprintf("its worker disconnected while running it (after %d attempt(s))", j.Attempts)
		if j.proto == protoGloom {
			msg = "job_failed"
		}
		js.finish(j, &outcome{state: queue.Lost, err: msg})
	}
}

// dropChunk is how many of a gone submitter's queued jobs are dropped under
// one hold of the lock: a million took 1.1 s in one go, and the lock is
// everyone's.
var dropChunk = 20000

// dropLater runs the next chunk of dropStored (a test holds it back).
var dropLater = func(next func()) { go next() }

// dropStored drops the queued jobs the store holds for p, whose connection
// closed: one at a time (no records for all of them at once), a chunk per
// hold of the lock. Until the last is gone, fill drops any of them it would
// hand out, a chunk per hold of the lock as well.
func (js *jobState) dropStored(p peer) {
	for n := 0; ; n++ {
		o, ok := js.ownerIDs[p] // gone with p's last job in the store (and o reused)
		if !ok || js.store.OwnerLen(o) == 0 {
			delete(js.leaving, p)
			return
		}
		if n == dropChunk {
			js.leaving[p] = true
			dropLater(func() { js.call(func(st *loopState) { st.jobs.dropStored(p) }) }) // after others had the lock
			return
		}
		js.dropOwned(p, js.take(js.store.OwnerFirst(o)))
	}
}

// dropOwned ends j, whose submitter p disconnected.
func (js *jobState) dropOwned(p peer, j *job) {
	js.dequeue(j)
	js.unown(j)
	j.owner = nil
	if js.sh != nil {
		js.sh.gaveUp(j)
	} else if j.worker != nil && j.worker.canCancel {
		j.worker.p.sendCancel(j, "TERM")
	}
	j.dropWaiter(p)
	js.finishQuietly(j)
}

// abandon ends every live job as lost (jsd is stopping).
func (js *jobState) abandon(why string) {
	for _, j := range js.live {
		if j.gone {
			continue
		}
		if js.sh != nil {
			delete(js.sh.nonces, j.ID) // cancelled in the cluster by shared.close
			js.finish(j, &outcome{state: queue.Lost, err: why + " (cancelled in the shared queue)"})
			continue
		}
		if j.State == queue.Queued {
			js.dequeue(j)
		}
		if j.worker != nil {
			delete(j.worker.running, j.ID)
			js.running[j.Type]--
			j.worker = nil
		}
		js.finish(j, &outcome{state: queue.Lost, err: why})
	}
	for _, t := range js.store.Types() { // the queued jobs the store kept alone
		for r := js.store.Peek(t); r != 0; r = js.store.Peek(t) {
			js.finish(js.take(r), &outcome{state: queue.Lost, err: why})
		}
	}
}

// finishQuietly cancels a job whose submitter is gone: nobody to tell.
func (js *jobState) finishQuietly(j *job) {
	js.end(j, &outcome{state: queue.Cancelled, err: "submitter disconnected"}, false)
}

func dropWaiters(ws []jobWaiter, p peer) []jobWaiter {
	out := ws[:0]
	for _, w := range ws {
		if w.p != p {
			out = append(out, w)
		}
	}
	return out
}

// mayRetry applies the retry rule of the job's protocol.
func (js *jobState) mayRetry(j *job) bool {
	switch j.proto {
	case protoGloom:
		return j.Attempts <= 3
	case protoDeputy:
		return js.deputyRetries < 0 || int(j.Attempts) <= js.deputyRetries
	}
	return j.Retries < 0 || j.Attempts <= j.Retries
}

// ---- views for status, jsctl and metrics ----

func (js *jobState) queuesView(now time.Time) []status.Queue {
	types := map[string]bool{}
	for _, t := range js.store.Types() {
		types[t] = true
	}
	for t, n := range js.running {
		if n > 0 {
			types[t] = true
		}
	}
	workersOf := map[string]int{}
	for _, w := range js.workers {
		for _, t := range w.types {
			workersOf[t]++
			types[t] = true
		}
	}
	var shared map[string]status.Queue
	if js.sh != nil { // the cluster's counts, as last refreshed
		shared = map[string]status.Queue{}
		for _, q := range js.sh.stats {
			shared[q.Type] = status.Queue{Type: q.Type, Queued: q.Queued, Running: q.Running}
			types[q.Type] = true
		}
	}
	out := make([]status.Queue, 0, len(types))
	for t := range types {
		q := status.Queue{Type: t, Queued: js.store.Len(t), Running: js.running[t], Workers: workersOf[t]}
		if next := js.store.Peek(t); next != 0 {
			q.NextWaitingMS = now.Sub(time.Unix(0, js.store.Submitted(next))).Milliseconds()
		}
		if sq, ok := shared[t]; ok {
			q.Queued, q.Running = sq.Queued, sq.Running
		}
		out = append(out, q)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

func (js *jobState) workersView() []status.Worker {
	out := make([]status.Worker, 0, len(js.workers))
	for _, w := range js.workers {
		out = append(out, status.Worker{ID: w.id, Types: w.types, Host: w.host, PID: w.pid,
			Busy: len(w.running), Capacity: w.capacity, Done: w.done, Since: w.since.UTC().Truncate(time.Millisecond)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func jobView(j *job) status.Job {
	v := status.Job{ID: j.ID, Type: j.Type, State: j.State.String(), Priority: int(j.Priority),
		Attempts: int(j.Attempts), Submitted: time.Unix(0, j.Submitted).UTC().Truncate(time.Millisecond)}
	if j.Started != 0 {
		end := j.Ended
		if end == 0 {
			end = time.Now().UnixNano()
		}
		v.RuntimeMS = (end - j.Started) / 1e6
	}
	if j.out != nil {
		v.Exit = j.out.exit
		v.Error = j.out.err
	}
	return v
}

// recentView is the newest ended jobs first.
func (js *jobState) recentView() []status.Job {
	out := []status.Job{}
	var seen map[string]bool
	for i := len(js.recent) - 1; i >= 0 && len(out) < recentJobs; i-- {
		j := js.recent[i]
		if js.sh != nil { // a job may end here twice: as a submitter's, and on a local worker
			if seen == nil {
				seen = map[string]bool{}
			}
			if seen[j.ID] {
				continue
			}
			seen[j.ID] = true
		}
		out = append(out, jobView(j))
	}
	return out
}

// list returns the live jobs (and the recent ended ones), filtered.
func (js *jobState) list(typ string, state string) []status.Job {
	out := []status.Job{}
	keep := func(j *job) bool {
		return (typ == "" || j.Type == typ) && (state == "" || j.State.String() == state)
	}
	for _, j := range js.live {
		if !j.gone && keep(j) {
			out = append(out, jobView(j))
		}
	}
	if state == "" || state == queue.Queued.String() {
		js.store.Each(typ, func(r queue.Ref) {
			if js.qhot[r] == nil {
				j := job{Job: queue.Job{State: queue.Queued}}
				js.store.Load(r, &j.Job)
				out = append(out, jobView(&j))
			}
		})
	}
	seen := map[string]bool{}
	for i := len(js.recent) - 1; i >= 0; i-- {
		j := js.recent[i]
		if !seen[j.ID] && !js.exists(j.ID) && keep(j) {
			seen[j.ID] = true
			out = append(out, jobView(j))
		}
	}
	for _, j := range js.detached {
		if !seen[j.ID] && keep(j) {
			out = append(out, jobView(j))
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Submitted.Before(out[b].Submitted) })
	return out
}
