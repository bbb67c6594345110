package integration

// The multi-host chaos test (issue 9, "Done means"): 3 NATS nodes (real
// nats-server processes, see natsnode_test.go), 2 jsd sharing their typed
// queues through them, workers on both, N jobs (1,000 in the short form,
// 5,000 with -tags chaos) while one NATS node and one jsd are SIGKILLed and
// restarted.
//
// The scenario, and what each kind of job must see:
//
//   - jsd-b is never killed. One connection to it submits owned jobs and
//     stays up: each gets exactly one outcome on it. Another submits
//     detached jobs.
//   - jsd-a is SIGKILLed midway and restarted on the same dir, flags and
//     --nats-name. Before the kill one connection submits owned jobs, one
//     detached jobs; both are cut by the kill and, once jsd-a is back,
//     submit the rest of their jobs on new connections (which stay up).
//   - Detached jobs are collected with {"cmd":"wait"} on jsd-b from the
//     start, and on jsd-a too once it is back (never on the jsd about to be
//     killed: a detached result is handed out once, and one jsd fetched for
//     a waiter just before it dies would be gone with it).
//   - A SIGKILLed jsd cancels nothing (only a clean stop cancels its
//     submitters' jobs): the jobs its dead connections had queued stay in
//     the cluster and run. Their outcomes are routed to jsd-a, which is
//     dead or, restarted, does not know them: they wait in the results
//     bucket. So an owned job that had no outcome on the cut connection is
//     asked again with wait on another jsd and gets it there once. The one
//     exception, allowed: an outcome jsd-a accepted for its connection in
//     its last instant (it answered the route "ok") but never wrote out is
//     gone with jsd-a; wait then says not_found. The handler's run log must
//     then show that the job ran. An owned job that wait does not find and
//     that never ran had not reached the cluster: it is sent again.
//   - A detached job sent on the cut connection without its "queued" ack
//     may or may not have reached the cluster: it is submitted again, same
//     id, on jsd-b. "queued": it had not; "id_exists": it had (the id is
//     unique cluster-wide). Either way it is then collected with wait. (An
//     id whose submit died half-way is only reserved, and a wait for it
//     says not_found once the reservation expired: it is sent again.)
//   - A submit answered "unavailable" (NATS failing over) is sent again.
//   - One job in five has retries 0: if the jsd running it dies (jsd-a), or
//     cannot write its outcome while NATS fails over, JetStream hands it out
//     again after the ack wait (3 s here) and it ends "lost" (its retries
//     are spent). The others have retries 3 and must end "did".
//   - The NATS node killed is the one jsd-b is connected to (found through
//     /connz), so jsd-b's submits, waits, outcomes and routes go through a
//     reconnect; it restarts 1 s later on the same ports and store dir and
//     must catch up (healthz) before jsd-a is killed.
//
// At the end: every job ended exactly once, no outcome reached a submitter
// twice, the counts add up, the job stream holds no message, the ids
// bucket holds no id, no MAX_DELIVERIES advisory is left, both jsds report
// empty queues and idle workers.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/js-toolkit/js/pkg/client"
	"github.com/js-toolkit/js/pkg/wire"
)

const mhType = "mh"

// mhJob is one job of the test and everything seen about it.
type mhJob struct {
	id       string
	sub      *mhSubmitter
	retries  int
	priority int

	// guarded by mhRun.mu
	tokened   bool     // holds a place in its submitter's window
	sentOn    int      // generation of the connection it was last sent on (see mhConn)
	acked     bool     // "queued" received
	existed   bool     // a resubmission was refused with id_exists
	reasked   bool     // owned job of a cut connection, asked again with wait
	resubmits int      // "unavailable" answers to its do
	outcomes  []string // every outcome seen: cmd@where
	state     string   // the first outcome's cmd, or "gone" (an allowed not_found)
	errText   string
}

func (j *mhJob) final() bool { return j.state != "" }

// mhSubmitter sends its jobs on one jsd, re-dialling when a connection is cut.
type mhSubmitter struct {
	name   string
	dir    string // the jsd's dir
	detach bool
	total  int           // its jobs
	sent   atomic.Int64  // of them sent at least once
	todo   chan *mhJob   // jobs to send (again)
	win    chan struct{} // its jobs in flight: sent and not ended
}

// mhConn is one connection of the test to a jsd, with its reader.
type mhConn struct {
	c      *jobConn
	where  string // "jsd-a#0" (jsd-a's first life), "jsd-a#1", "jsd-b"
	gen    int    // jsd-a's life it was dialled in (0 before the kill); jsd-b: 0
	dir    string
	sub    *mhSubmitter // nil for a waiter
	sent   map[string]*mhJob
	waits  map[string]*mhJob // a waiter's outstanding waits
	sem    chan struct{}     // a waiter's limit of outstanding waits
	closed chan struct{}
	dead   bool // cut: its reader handed over what was sent on it (mhRun.mu)
}

type mhRun struct {
	t     *testing.T
	n     int
	mu    sync.Mutex
	jobs  map[string]*mhJob
	ended atomic.Int64

	waitq    chan *mhJob   // detached or re-asked jobs to collect with wait
	stop     chan struct{} // the test is over: goroutines end quietly
	stopping atomic.Bool
	aGen     atomic.Int32 // jsd-a's life: 0, then 1 once restarted
	aKilled  atomic.Bool  // jsd-a's first life was SIGKILLed
	rescue   *mhSubmitter // resubmits on jsd-b the detached jobs a cut connection left unacked
	wg       sync.WaitGroup

	// counters, guarded by mu
	cut          int // connections cut by the jsd kill
	unavailable  int // do answered "unavailable"
	waitRetries  int // wait answered "unavailable", or cut
	idExists     int // resubmissions answered id_exists
	resubQueued  int // resubmissions answered queued
	lostMsgs     map[string]int
	gone         []string // owned jobs whose outcome went down with jsd-a
	reaskedCount int
	neverQueued  int // unacknowledged jobs that turned out not to be in the cluster: sent again
	runlog       string
}

// ranJob reports whether the run log shows id (the handler writes it before
// the job's outcome exists).
func ranJob(runlog, id string) bool {
	b, _ := os.ReadFile(runlog)
	return slices.Contains(strings.Split(string(b), "\n"), id)
}

// TestChaosMultiHost: see the top of this file.
func TestChaosMultiHost(t *testing.T) {
	t.Parallel()
	n := chaosScale(1000, 5000)
	budget := time.Duration(chaosScale(120, 900)) * time.Second
	began := time.Now()

	nc := startNATSCluster(t, 3)
	natsUp := time.Since(began)
	runlog := filepath.Join(t.TempDir(), "runs")
	dirA, dirB := t.TempDir(), t.TempDir()
	jsdArgs := func(name string) []string {
		return []string{"--nats", nc.urls(), "--nats-name", name, "--nats-ack-wait", "3"}
	}
	a := startJSDIn(t, dirA, jsdArgs("jsd-a")...)
	b := startJSDIn(t, dirB, jsdArgs("jsd-b")...)
	aFirst := a // its stderr, after the kill
	var workers []*proc
	for _, dir := range []string{dirA, dirB} {
		for i := 0; i < 2; i++ {
			// The handler echoes the arg (the job's id and a newline),
			// appends it to the run log (which jobs ran, how often), and
			// takes 0.1 s: the jsd kill finds jobs running on its workers.
			w, err := spawn(t, baseEnv(dir), bin("jsworker"), "--type", mhType, "--concurrency", "3", "--",
				"sh", "-c", `tee -a "$0" && sleep 0.1`, runlog)
			if err != nil {
				t.Fatal(err)
			}
			workers = append(workers, w)
		}
	}
	waitFor(t, 30*time.Second, "2 workers on each jsd", func() bool {
		return len(a.status().Workers) == 2 && len(b.status().Workers) == 2
	})

	x := &mhRun{t: t, n: n, jobs: map[string]*mhJob{}, waitq: make(chan *mhJob, n), stop: make(chan struct{}),
		lostMsgs: map[string]int{}, runlog: runlog}
	window := max(n/20, 20)
	newSub := func(name, dir string, detach bool) *mhSubmitter {
		return &mhSubmitter{name: name, dir: dir, detach: detach, todo: make(chan *mhJob, n), win: make(chan struct{}, window)}
	}
	subs := []*mhSubmitter{
		newSub("ownB", dirB, false), // 30%
		newSub("detB", dirB, true),  // 20%
		newSub("ownA", dirA, false), // 25%
		newSub("detA", dirA, true),  // 25%
	}
	x.rescue = newSub("rescue", dirB, true)
	shares := []int{30, 20, 25, 25}
	k := 0
	for si, s := range subs {
		cnt := n * shares[si] / 100
		if si == len(subs)-1 {
			cnt = n - k
		}
		s.total = cnt
		for i := 0; i < cnt; i++ {
			j := &mhJob{id: fmt.Sprintf("%s-%d", s.name, i), sub: s, retries: 3, priority: k % 3}
			if k%5 == 0 {
				j.retries = 0
			}
			x.jobs[j.id] = j
			s.todo <- j
			k++
		}
	}
	defer x.shutdown()
	for _, s := range append(subs, x.rescue) {
		x.goLoop(func() { x.submitLoop(s) })
	}
	x.goLoop(func() { x.waitLoop(dirB, "jsd-b") })

	// 1. The NATS node jsd-b is connected to dies, and comes back 1 s later.
	x.waitProgress(n/4, budget, began, nc, a, b)
	victim := -1
	waitFor(t, 10*time.Second, "jsd-b's NATS connection in /connz", func() bool { victim = nc.nodeOf("jsd jsd-b"); return victim >= 0 })
	natsKillAt := x.ended.Load()
	tKill := time.Now()
	t.Logf("%v: %d jobs ended; SIGKILL NATS node %s (jsd-b's)", time.Since(began).Round(time.Millisecond), natsKillAt, nc.nodes[victim].name)
	nc.kill(victim)
	time.Sleep(time.Second)
	nc.start(victim)
	nc.waitReady(60 * time.Second)
	natsBack := time.Since(tKill)
	t.Logf("%v: %d jobs ended; NATS node %s restarted and current", time.Since(began).Round(time.Millisecond), x.ended.Load(), nc.nodes[victim].name)

	// 2. jsd-a dies with its submitters' connections and its workers'
	// jobs, and is restarted on the same dir with the same flags: once its
	// owned-job submitter has sent over half of its jobs (so that it has
	// jobs in flight and more to send).
	ownA := subs[2]
	x.waitUntil("jsd-a's submitter to send half of its jobs", budget, began, func() bool {
		return ownA.sent.Load() >= int64(ownA.total*55/100)
	}, nc, a, b)
	jsdKillAt := x.ended.Load()
	x.aKilled.Store(true)
	t.Logf("%v: %d jobs ended; SIGKILL jsd-a", time.Since(began).Round(time.Millisecond), jsdKillAt)
	a.kill()
	x.aGen.Store(1) // a connection made from now on is to jsd-a's second life
	time.Sleep(500 * time.Millisecond)
	a = startJSDIn(t, dirA, jsdArgs("jsd-a")...)
	t.Logf("%v: %d jobs ended; jsd-a restarted", time.Since(began).Round(time.Millisecond), x.ended.Load())
	x.goLoop(func() { x.waitLoop(dirA, "jsd-a#1") })

	// 3. Every job ends.
	x.waitProgress(n, budget, began, nc, a, b)
	elapsed := time.Since(began)
	// Nothing more may arrive: give late duplicates a moment.
	time.Sleep(time.Second)
	x.stopping.Store(true)

	x.mu.Lock()
	counts := map[string]int{}
	for _, j := range x.jobs {
		if !j.final() {
			t.Errorf("job %s never ended", j.id)
			continue
		}
		counts[j.state]++
		if len(j.outcomes) > 1 {
			t.Errorf("job %s: %d outcomes delivered: %v", j.id, len(j.outcomes), j.outcomes)
		}
		switch j.state {
		case wire.CmdDid:
		case wire.CmdLost:
			if j.retries != 0 {
				t.Errorf("job %s (retries %d) ended lost: %s (only jobs with retries 0 may)", j.id, j.retries, j.errText)
			}
		case "gone":
		default:
			t.Errorf("job %s ended %s (%s)", j.id, j.state, j.errText)
		}
	}
	if sum := counts[wire.CmdDid] + counts[wire.CmdLost] + counts["gone"]; sum != n {
		t.Errorf("outcomes %v add up to %d, not %d", counts, sum, n)
	}
	gone := slices.Clone(x.gone)
	stats := fmt.Sprintf("%d connections cut, %d owned jobs asked again with wait, %d unacknowledged jobs not in the cluster (sent again), "+
		"%d submits answered unavailable (sent again), %d waits asked again, %d unacked detached jobs resubmitted (%d had reached the cluster: id_exists)",
		x.cut, x.reaskedCount, x.neverQueued, x.unavailable, x.waitRetries, x.resubQueued+x.idExists, x.idExists)
	lostMsgs := maps2str(x.lostMsgs)
	x.mu.Unlock()

	// The run log: which jobs ran, how often (a job runs again when its
	// jsd died, or could not write its outcome, before its ack wait).
	runs := map[string]int{}
	if b, err := os.ReadFile(runlog); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if line != "" {
				runs[line]++
			}
		}
	}
	for _, id := range gone {
		if runs[id] == 0 {
			t.Errorf("job %s: its outcome went down with jsd-a (wait says not_found), but it never ran", id)
		}
	}
	reruns := 0
	for _, c := range runs {
		reruns += c - 1
	}

	// Nothing stays in JetStream, and both jsds are idle.
	x.checkJetStream(nc.urls())
	poolIdle(t, b, 2, 20*time.Second, workers...)
	poolIdle(t, a, 2, 20*time.Second, workers...)
	mustBeAlive(t, "jsworker", workers...)
	nc.alive()
	t.Logf("%d jobs in %v (NATS cluster up in %v): %v; NATS node %s killed after %d outcomes, back and current in %v; "+
		"jsd-a killed after %d outcomes; %d reruns; lost: %s; %s",
		n, elapsed.Round(time.Millisecond), natsUp.Round(time.Millisecond), counts, nc.nodes[victim].name, natsKillAt,
		natsBack.Round(time.Millisecond), jsdKillAt, reruns, lostMsgs, stats)
	if t.Failed() {
		t.Logf("jsd-a (first life) stderr:\n%s", tail(aFirst.stderr.String(), 6000))
		t.Logf("jsd-a stderr:\n%s", tail(a.stderr.String(), 6000))
		t.Logf("jsd-b stderr:\n%s", tail(b.stderr.String(), 6000))
	}
}

func maps2str(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%d× %q", v, k))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func (x *mhRun) goLoop(f func()) {
	x.wg.Add(1)
	go func() { defer x.wg.Done(); f() }()
}

func (x *mhRun) shutdown() {
	x.stopping.Store(true)
	select {
	case <-x.stop:
	default:
		close(x.stop)
	}
	x.wg.Wait()
}

// waitProgress waits until at least target jobs have ended; on the deadline
// it fails the test with what is missing.
func (x *mhRun) waitProgress(target int, budget time.Duration, began time.Time, nc *natsCluster, ds ...*daemon) {
	x.t.Helper()
	x.waitUntil(fmt.Sprintf("%d jobs to end", target), budget, began, func() bool { return x.ended.Load() >= int64(target) }, nc, ds...)
}

// waitUntil waits until cond holds; when the budget is spent, or no job
// ended for a long time, it fails the test with what is missing.
func (x *mhRun) waitUntil(what string, budget time.Duration, began time.Time, cond func() bool, nc *natsCluster, ds ...*daemon) {
	x.t.Helper()
	// With a 3 s ack wait no job waits long; jsd gives a submit a minute.
	const stall = 75 * time.Second
	last, lastAt := x.ended.Load(), time.Now()
	for !cond() {
		if e := x.ended.Load(); e != last {
			last, lastAt = e, time.Now()
		}
		if time.Since(began) > budget || time.Since(lastAt) > stall {
			x.diagnose(nc, ds...)
			x.t.Fatalf("only %d of %d jobs ended within %v, none in the last %v (waiting for %s)",
				x.ended.Load(), x.n, time.Since(began).Round(time.Second), time.Since(lastAt).Round(time.Second), what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// errorf reports a problem found by a goroutine, unless the test is over.
func (x *mhRun) errorf(format string, args ...any) {
	if !x.stopping.Load() {
		x.t.Errorf(format, args...)
	}
}

// dial connects to the jsd in dir, retrying while it is down (jsd-a between
// its kill and its restart), until the test stops.
func (x *mhRun) dial(dir string, sub *mhSubmitter, where string) *mhConn {
	for {
		gen := int(x.aGen.Load())
		c, err := dialJobsErr(dir)
		if err == nil {
			if strings.HasPrefix(where, "jsd-a") {
				where = fmt.Sprintf("jsd-a#%d", gen)
			}
			mc := &mhConn{c: c, where: where, gen: gen, dir: dir, sub: sub, sent: map[string]*mhJob{},
				waits: map[string]*mhJob{}, closed: make(chan struct{})}
			return mc
		}
		select {
		case <-x.stop:
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func whereOf(s *mhSubmitter) string {
	if s.name == "ownA" || s.name == "detA" {
		return "jsd-a"
	}
	return "jsd-b"
}

// submitLoop sends s's jobs, at most its window in flight, on a connection
// it re-dials when it is cut.
func (x *mhRun) submitLoop(s *mhSubmitter) {
	var mc *mhConn
	defer func() {
		if mc != nil {
			mc.c.close()
		}
	}()
	for {
		var j *mhJob
		select {
		case <-x.stop:
			return
		case j = <-s.todo:
		}
		x.mu.Lock()
		tokened := j.tokened
		j.tokened = true
		x.mu.Unlock()
		if !tokened {
			s.sent.Add(1)
			select {
			case s.win <- struct{}{}:
			case <-x.stop:
				return
			}
		}
		for {
			if mc == nil {
				if mc = x.dial(s.dir, s, whereOf(s)); mc == nil {
					return
				}
				x.goLoop(func() { x.readSubmitter(mc) })
			}
			x.mu.Lock()
			if mc.dead {
				x.mu.Unlock()
				mc = nil
				continue
			}
			mc.sent[j.id] = j
			j.sentOn = mc.gen
			x.mu.Unlock()
			msg := map[string]any{"cmd": "do", "req": "d", "id": j.id, "type": mhType, "arg": j.id + "\n",
				"retries": j.retries, "priority": j.priority}
			if s.detach {
				msg["detach"] = true
			}
			if err := mc.c.send(msg); err == nil {
				break
			}
			// Cut: the reader hands over what was sent on it (this job
			// too); it is not sent again here.
			<-mc.closed
			mc = nil
			break
		}
	}
}

// readSubmitter reads a submitting connection: acks, refusals, outcomes.
func (x *mhRun) readSubmitter(mc *mhConn) {
	defer close(mc.closed)
	for {
		m, err := mc.c.recv(time.Time{})
		if err != nil {
			x.cutSubmitter(mc, err)
			return
		}
		id := client.IDString(m.ID)
		x.mu.Lock()
		j := x.jobs[id]
		if j == nil || mc.sent[id] != j {
			x.mu.Unlock()
			x.errorf("%s (%s): a message about a job not sent on it: %+v", mc.where, mc.sub.name, m)
			continue
		}
		switch {
		case m.Cmd == wire.CmdQueued:
			j.acked = true
			if mc.sub == x.rescue {
				x.resubQueued++
			}
			if mc.sub.detach {
				delete(mc.sent, id) // collected with wait
				x.mu.Unlock()
				x.waitq <- j
				continue
			}
		case m.Cmd == wire.CmdError && m.Code == wire.CodeUnavailable:
			// The cluster did not take it (NATS failing over): again.
			delete(mc.sent, id)
			j.resubmits++
			x.unavailable++
			x.mu.Unlock()
			go func() {
				time.Sleep(100 * time.Millisecond)
				j.sub.todo <- j
			}()
			continue
		case m.Cmd == wire.CmdError && m.Code == wire.CodeIDExists:
			// A resubmission of a job that had reached the cluster after
			// all: collect it with wait.
			delete(mc.sent, id)
			j.existed = true
			x.idExists++
			if !mc.sub.detach {
				j.reasked = true
				x.reaskedCount++
			}
			x.mu.Unlock()
			x.waitq <- j
			continue
		case isOutcome(m):
			delete(mc.sent, id)
			if mc.sub.detach {
				x.mu.Unlock()
				x.errorf("%s: an outcome for detached job %s on its submitting connection: %+v", mc.where, id, m)
				continue
			}
			x.outcomeLocked(j, m, mc.where)
		default:
			x.mu.Unlock()
			x.errorf("%s (%s): unexpected message %+v", mc.where, mc.sub.name, m)
			continue
		}
		x.mu.Unlock()
	}
}

// cutSubmitter hands over what a cut connection had in flight. Only jsd-a's
// first life may cut them.
func (x *mhRun) cutSubmitter(mc *mhConn, err error) {
	mc.c.close()
	if x.stopping.Load() {
		return
	}
	if !(strings.HasPrefix(mc.where, "jsd-a") && mc.gen == 0 && x.aKilled.Load()) {
		x.errorf("%s (%s): connection lost: %v", mc.where, mc.sub.name, err)
	}
	x.mu.Lock()
	x.cut++
	mc.dead = true
	var reask []*mhJob
	for id, j := range mc.sent {
		delete(mc.sent, id)
		switch {
		case !mc.sub.detach:
			// Owned: it runs anyway (a killed jsd cancels nothing); ask
			// for its outcome elsewhere.
			j.reasked = true
			x.reaskedCount++
			reask = append(reask, j)
		case !j.acked:
			x.rescue.todo <- j
		}
	}
	x.mu.Unlock()
	for _, j := range reask {
		x.waitq <- j
	}
}

// outcomeLocked records an outcome (x.mu held).
func (x *mhRun) outcomeLocked(j *mhJob, m *wire.Msg, where string) {
	j.outcomes = append(j.outcomes, m.Cmd+"@"+where)
	if j.final() {
		x.mu.Unlock()
		x.errorf("job %s: a second outcome %s via %s (first %s)", j.id, m.Cmd, where, j.state)
		x.mu.Lock()
		return
	}
	j.state, j.errText = m.Cmd, m.Error
	switch m.Cmd {
	case wire.CmdDid:
		if want, _ := json.Marshal(j.id + "\n"); string(m.Res) != string(want) {
			x.errorf("job %s: result %s, want %s", j.id, m.Res, want)
		}
	case wire.CmdLost:
		x.lostMsgs[lostKind(m.Error)]++
	}
	x.finishLocked(j)
}

func lostKind(msg string) string {
	if i := strings.Index(msg, " (ack wait"); i >= 0 {
		return msg[:i]
	}
	if i := strings.Index(msg, " (after"); i >= 0 {
		return msg[:i]
	}
	return msg
}

func (x *mhRun) finishLocked(j *mhJob) {
	if j.tokened {
		select {
		case <-j.sub.win:
		default:
		}
	}
	x.ended.Add(1)
}

// waitLoop collects detached and re-asked jobs with wait on the jsd in
// dir, at most 64 waits outstanding (each is a KV watch in the cluster).
func (x *mhRun) waitLoop(dir, where string) {
	for {
		mc := x.dial(dir, nil, where)
		if mc == nil {
			return
		}
		mc.where = where
		mc.sem = make(chan struct{}, 64)
		done := make(chan struct{})
		x.goLoop(func() { defer close(done); x.readWaiter(mc) })
	send:
		for {
			select {
			case mc.sem <- struct{}{}:
			case <-x.stop:
				mc.c.close()
				return
			case <-done:
				break send
			}
			var j *mhJob
			select {
			case j = <-x.waitq:
			case <-x.stop:
				mc.c.close()
				return
			case <-done:
				break send
			}
			x.mu.Lock()
			if mc.dead {
				x.mu.Unlock()
				x.waitq <- j
				break send
			}
			mc.waits[j.id] = j
			x.mu.Unlock()
			if err := mc.c.send(map[string]any{"cmd": "wait", "req": "w", "id": j.id}); err != nil {
				<-done // the reader hands the waits back
				break send
			}
		}
		<-done
		if x.stopping.Load() {
			return
		}
	}
}

func (x *mhRun) readWaiter(mc *mhConn) {
	for {
		m, err := mc.c.recv(time.Time{})
		if err != nil {
			mc.c.close()
			if !x.stopping.Load() {
				x.errorf("waiter on %s: connection lost: %v", mc.where, err)
			}
			x.mu.Lock()
			mc.dead = true
			var back []*mhJob
			for id, j := range mc.waits {
				delete(mc.waits, id)
				back = append(back, j)
				x.waitRetries++
			}
			x.mu.Unlock()
			for _, j := range back {
				x.waitq <- j
			}
			return
		}
		id := client.IDString(m.ID)
		x.mu.Lock()
		j := mc.waits[id]
		if j == nil {
			x.mu.Unlock()
			x.errorf("waiter on %s: a message about a job it does not wait for: %+v", mc.where, m)
			continue
		}
		delete(mc.waits, id)
		<-mc.sem
		switch {
		case isOutcome(m):
			x.outcomeLocked(j, m, mc.where+" wait")
			x.mu.Unlock()
		case m.Cmd == wire.CmdError && m.Code == wire.CodeUnavailable:
			x.waitRetries++
			x.mu.Unlock()
			go func() {
				time.Sleep(100 * time.Millisecond)
				x.waitq <- j
			}()
		case m.Cmd == wire.CmdError && m.Code == wire.CodeNotFound && j.reasked && j.sentOn == 0 && ranJob(x.runlog, j.id):
			// An owned job of jsd-a's first life that ran, and is not in
			// the cluster any more: its outcome was taken by jsd-a for its
			// connection just before jsd-a died, and is gone with it.
			j.state, j.errText = "gone", m.Message
			x.gone = append(x.gone, j.id)
			x.finishLocked(j)
			x.mu.Unlock()
		case m.Cmd == wire.CmdError && m.Code == wire.CodeNotFound && !j.acked:
			// Never acknowledged, and not in the cluster: it never got in
			// (jsd-a died before its submit went through, or the id's
			// reservation expired): sent again.
			j.reasked, j.existed = false, false
			x.neverQueued++
			x.mu.Unlock()
			j.sub.todo <- j
		default:
			x.mu.Unlock()
			x.errorf("waiter on %s: job %s (acked %v, reasked %v, existed %v): %+v", mc.where, id, j.acked, j.reasked, j.existed, m)
			// Count it as ended (with no outcome) so the test does not
			// wait for it; the error above fails the test.
			x.mu.Lock()
			j.state, j.errText = "wait-error", m.Code+": "+m.Message
			x.finishLocked(j)
			x.mu.Unlock()
		}
	}
}

// checkJetStream looks into the cluster itself: the job stream holds no
// message and no consumer has one pending, no id stays taken, no advisory
// waits. (Acks are applied by the replicas a moment after they are
// confirmed: polled for a while.)
func (x *mhRun) checkJetStream(urls string) {
	t := x.t
	t.Helper()
	conn, err := nats.Connect(urls, nats.Name("test"), nats.MaxReconnects(-1))
	if err != nil {
		t.Errorf("connect to NATS to check the streams: %v", err)
		return
	}
	defer conn.Close()
	js, err := jetstream.New(conn)
	if err != nil {
		t.Error(err)
		return
	}
	var last string
	deadline := time.Now().Add(20 * time.Second)
	for {
		last = jsLeftovers(js)
		if last == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("JetStream still holds jobs after 20 s: %s", last)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if st, err := js.Stream(ctx, "KV_JS_RESULTS"); err == nil {
		if info, err := st.Info(ctx); err == nil {
			t.Logf("results bucket: %d outcomes kept for an origin that did not take them", info.State.Msgs)
		}
	}
}

// jsLeftovers describes what JetStream still holds of the jobs ("" none).
func jsLeftovers(js jetstream.JetStream) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []string
	st, err := js.Stream(ctx, "JS_JOBS_"+mhType)
	if err != nil {
		return "stream JS_JOBS_" + mhType + ": " + err.Error()
	}
	info, err := st.Info(ctx)
	if err != nil {
		return "stream info: " + err.Error()
	}
	if info.State.Msgs != 0 {
		out = append(out, fmt.Sprintf("%d messages in JS_JOBS_%s (first seq %d)", info.State.Msgs, mhType, info.State.FirstSeq))
	}
	cl := st.ListConsumers(ctx)
	for ci := range cl.Info() {
		if ci.NumAckPending != 0 || ci.NumPending != 0 {
			out = append(out, fmt.Sprintf("consumer %s: %d ack pending, %d pending", ci.Name, ci.NumAckPending, ci.NumPending))
		}
	}
	if err := cl.Err(); err != nil {
		out = append(out, "consumers: "+err.Error())
	}
	if adv, err := js.Stream(ctx, "JS_ADVISORIES"); err == nil {
		if ai, err := adv.Info(ctx); err == nil && ai.State.Msgs != 0 {
			out = append(out, fmt.Sprintf("%d advisories in JS_ADVISORIES", ai.State.Msgs))
		}
	}
	held, err := idsHeld(ctx, js)
	if err != nil {
		out = append(out, "ids bucket: "+err.Error())
	} else if len(held) > 0 {
		ids := slices.Sorted(maps.Keys(held))
		var recs []string
		for _, k := range ids[:min(len(ids), 10)] {
			recs = append(recs, held[k])
		}
		out = append(out, fmt.Sprintf("%d ids still taken in JS_IDS, e.g. %s", len(ids), strings.Join(recs, " ")))
	}
	// The KV API's own listing (an ordered consumer, which a replica may
	// serve), for comparison.
	if kv, err := js.KeyValue(ctx, "JS_IDS"); err == nil {
		if l, err := kv.ListKeys(ctx); err == nil {
			var extra []string
			for k := range l.Keys() {
				if _, ok := held[k]; !ok {
					extra = append(extra, k)
				}
			}
			if len(extra) > 0 {
				out = append(out, fmt.Sprintf("(the KV key listing shows %d ids the leader has not: %v)", len(extra), extra[:min(len(extra), 10)]))
			}
		}
	}
	return strings.Join(out, "; ")
}

// idsHeld lists the ids bucket's live records (key -> record), read
// through the stream's leader: the subjects it holds (STREAM.INFO), then
// each one's last message (STREAM.MSG.GET, not a direct get that any
// replica answers); purge and TTL markers are not live.
func idsHeld(ctx context.Context, js jetstream.JetStream) (map[string]string, error) {
	st, err := js.Stream(ctx, "KV_JS_IDS")
	if err != nil {
		return nil, err
	}
	const pre = "$KV.JS_IDS."
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(pre+">"))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	nc := js.Conn()
	for subj := range info.State.Subjects {
		req, _ := json.Marshal(map[string]string{"last_by_subj": subj})
		resp, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_JS_IDS", req)
		if err != nil {
			return nil, err
		}
		var r struct {
			Error   *jetstream.APIError `json:"error"`
			Message *struct {
				Hdrs []byte `json:"hdrs"`
				Data []byte `json:"data"`
			} `json:"message"`
		}
		if err := json.Unmarshal(resp.Data, &r); err != nil {
			return nil, err
		}
		if r.Error != nil || r.Message == nil {
			continue // gone meanwhile
		}
		if len(r.Message.Hdrs) > 0 {
			if h, err := nats.DecodeHeadersMsg(r.Message.Hdrs); err == nil &&
				(h.Get("KV-Operation") != "" || h.Get(jetstream.MarkerReasonHeader) != "") {
				continue
			}
		}
		out[strings.TrimPrefix(subj, pre)] = string(r.Message.Data)
	}
	return out, nil
}

// diagnose logs, for the jobs that have not ended, what the test saw and
// what the cluster holds about them.
func (x *mhRun) diagnose(nc *natsCluster, ds ...*daemon) {
	t := x.t
	x.mu.Lock()
	var pending []*mhJob
	for _, j := range x.jobs {
		if !j.final() {
			pending = append(pending, j)
		}
	}
	x.mu.Unlock()
	sort.Slice(pending, func(i, k int) bool { return pending[i].id < pending[k].id })
	t.Logf("%d jobs have not ended", len(pending))
	conn, err := nats.Connect(nc.urls(), nats.Name("test"))
	var ids, results jetstream.KeyValue
	if err == nil {
		defer conn.Close()
		if js, err := jetstream.New(conn); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			ids, _ = js.KeyValue(ctx, "JS_IDS")
			results, _ = js.KeyValue(ctx, "JS_RESULTS")
			cancel()
		}
	}
	if conn != nil {
		if js, err := jetstream.New(conn); err == nil {
			t.Logf("JetStream: %s", jsLeftovers(js))
		}
	}
	for _, j := range pending[:min(len(pending), 20)] {
		x.mu.Lock()
		line := fmt.Sprintf("job %s (%s, retries %d): acked %v, sent on gen %d, reasked %v, existed %v, resubmits %d",
			j.id, j.sub.name, j.retries, j.acked, j.sentOn, j.reasked, j.existed, j.resubmits)
		x.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if ids != nil {
			if e, err := ids.Get(ctx, j.id); err == nil {
				line += "; record " + string(e.Value())
			} else {
				line += "; record: " + err.Error()
			}
		}
		if results != nil {
			for _, origin := range []string{"jsd-a", "jsd-b"} {
				if _, err := results.Get(ctx, origin+"."+j.id); err == nil {
					line += "; kept in the results bucket for " + origin
				} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
					line += "; results bucket: " + err.Error()
				}
			}
		}
		cancel()
		for _, d := range ds {
			for _, l := range strings.Split(d.stderr.String(), "\n") {
				if strings.Contains(l, j.id+":") || strings.Contains(l, j.id+" ") {
					line += "\n    " + filepath.Base(d.dir) + ": " + l
				}
			}
		}
		t.Log(line)
	}
	for _, d := range ds {
		t.Logf("jsd in %s: stderr:\n%s", d.dir, tail(d.stderr.String(), 4000))
	}
}
