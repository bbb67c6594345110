// Package server is jsd: the daemon that owns the slot pool (a
// make-compatible jobserver FIFO) and the typed job queues, and serves
// clients on its unix socket and TCP (native JSON lines, gloom frames, HTTP).
//
// All scheduler state (loopState) is guarded by one mutex; each event is
// handled where it happens (a connection's reader, a timer, an HTTP handler)
// by Server.exec, without blocking. Connections have a reader goroutine each,
// and a writer goroutine once a reply had to wait for the socket; the loop
// goroutine keeps time; the status file is written
// from an immutable snapshot. See docs/architecture.md.
package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/js-toolkit/js/pkg/jobserver"
	"github.com/js-toolkit/js/pkg/journal"
	"github.com/js-toolkit/js/pkg/rundir"
	"github.com/js-toolkit/js/pkg/status"
)

// Config is what jsd is started with.
type Config struct {
	Paths       rundir.Paths
	Slots       int
	IdleTimeout time.Duration // 0: never stop when idle
	Version     string
	Log         io.Writer // diagnostics; nil: stderr

	// TCP (tcp.go): one port for native JSON lines, gloom frames and HTTP.
	Host               string          // listen address; non-loopback needs AuthToken
	Port               int             // 0 with PortRange zero: no TCP listener
	PortRange          [2]int          // a random free port in [0]..[1]
	AuthToken          string          // "" on loopback: no token needed
	AllowUnauth        map[string]bool // "deputy", "gloom", "seamless": served without a token
	GloomPorts         [2]int          // gloom-only listeners: masters, slaves
	TransformationType string          // job type of /run-transformation
	Verbose            bool            // metrics to the log every 5 s

	// Workers jsd starts and supervises (workers.go).
	Workers       int
	WorkerType    string
	WorkerHandler []string

	Journal string // bbolt file that keeps queued jobs and detached results across restarts; "": memory only

	Shared *SharedConfig // the typed queues in NATS JetStream (shared.go); nil: in memory

	DeputyRetries int           // requeues of a plain deputy job whose worker died; <0: unbounded (deputy's rule)
	ResultTTL     time.Duration // how long a detached job's result waits for 'jsctl wait'
	MaxResults    int           // at most this many detached results are kept (the oldest expire first)
}

// Server is one running jsd.
type Server struct {
	cfg   Config
	log   *log.Logger
	lock  *rundir.Lock
	pipe  *jobserver.Pipe
	ln    net.Listener
	uloop *unixLoop // serves ln (evloop.go)
	tcp   tcpState
	sup   *supervisor

	adaptOnce sync.Once
	adapt     *adapters // gloom and HTTP (http.go)
	journal   *journal.Journal
	sh        *shared // nil: in-memory queues
	sf        *status.File
	started   time.Time

	kick     chan struct{} // wakes the loop
	mu       sync.Mutex    // guards st and dirty
	dirty    []*conn       // connections with replies to flush
	snap     atomic.Pointer[status.Doc]
	statusCh chan struct{} // kicks the status writer
	sfMu     sync.Mutex    // guards sf writes and state
	state    string        // guarded by sfMu: the daemon state last written
	wg       sync.WaitGroup
	connSeq  atomic.Uint64
	fdl      fdLimitLog // refusals at the open-file limit (fdlimit.go)

	st loopState // guarded by mu
}

// UsageError is a start-up failure caused by the flags (exit 64).
type UsageError struct {
	Err  error
	Hint string
}

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// StartError is a failure before jsd serves; it has been written to the
// status file as "failed" unless the directory is locked by another jsd.
type StartError struct{ Err error }

func (e *StartError) Error() string { return e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// Start prepares the runtime directory, the lock, the FIFO and the socket.
// On error nothing is left running. A live jsd in the same directory gives
// *rundir.ErrLocked and nothing is written.
func Start(cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = os.Stderr
	}
	if cfg.ResultTTL <= 0 {
		cfg.ResultTTL = time.Hour
	}
	if cfg.MaxResults <= 0 {
		cfg.MaxResults = 100000
	}
	s := &Server{
		cfg:      cfg,
		log:      log.New(cfg.Log, "jsd: ", 0),
		started:  time.Now(),
		kick:     make(chan struct{}, 1),
		statusCh: make(chan struct{}, 1),
	}
	if cfg.Slots < 1 || cfg.Slots > jobserver.MaxSlots {
		return nil, fmt.Errorf("--slots %d is out of range 1..%d", cfg.Slots, jobserver.MaxSlots)
	}
	p := cfg.Paths
	if err := rundir.Ensure(p.Dir); err != nil {
		return nil, err
	}
	lock, err := rundir.TakeLock(p.Lock)
	if err != nil {
		return nil, err
	}
	s.lock = lock
	sf, werr := status.OpenFile(p.Status)
	if werr != nil {
		s.log.Printf("warning: %v", werr)
	}
	s.sf = sf
	fail := func(err error) (*Server, error) {
		s.writeStatus(status.Failed, err.Error())
		s.cleanup()
		return nil, &StartError{err}
	}
	s.writeStatus(status.Starting, "")
	if err := s.openPool(); err != nil {
		return fail(err)
	}
	// The jobs come back before anyone can connect.
	s.st.init(s)
	if err := s.openJournal(); err != nil {
		return fail(err)
	}
	if err := s.startShared(); err != nil {
		return fail(err)
	}
	if err := s.listenUnix(); err != nil {
		return fail(err)
	}
	if err := s.listenTCP(); err != nil {
		return fail(err)
	}
	if err := s.startWorkers(); err != nil {
		return fail(err)
	}
	s.publish()
	s.writeStatus(status.Running, "")
	return s, nil
}

// openPool creates the FIFO, or reuses one that live processes still hold.
func (s *Server) openPool() error {
	path := s.cfg.Paths.FIFO
	n := s.cfg.Slots
	reuse := false
	// Only a process started after us, or one of our own user's (whose
	// descriptor table we can read), can hold our FIFO: the 0700 directory
	// keeps everyone else from opening it. So an unreadable table of an
	// older process (another user's, the kernel's) is not a holder.
	self, _ := jobserver.StartTime(os.Getpid())
	s.st.bornAfter = self
	if jobserver.IsFIFO(path) {
		holders, err := jobserver.Holders(path, os.Getpid(), self)
		if err != nil {
			return fmt.Errorf("check who holds %s: %w", path, err)
		}
		reuse = len(holders) > 0
		if reuse {
			s.log.Printf("fifo %s is still held by pid %v: reusing it without re-seeding what they hold", path, holders)
		}
	}
	if !reuse {
		if err := jobserver.CreateFIFO(path); err != nil {
			return err
		}
	}
	pipe, err := jobserver.OpenOwner(path)
	if err != nil {
		return err
	}
	s.pipe = pipe
	if err := pipe.EnsureCapacity(n); err != nil {
		return err
	}
	if reuse {
		// Tokens that live holders have taken are theirs; only the
		// reclaimer may top up, once nobody but us holds the FIFO.
		free, err := pipe.Free()
		if err != nil {
			return err
		}
		if free > n {
			buf := make([]byte, free-n)
			_, _ = pipe.TryTake(buf)
		}
		return nil
	}
	put, err := pipe.Put(n)
	if err != nil || put != n {
		return fmt.Errorf("seed fifo with %d tokens: wrote %d: %v", n, put, err)
	}
	return nil
}

func (s *Server) listenUnix() error {
	path := s.cfg.Paths.Socket
	// We hold the daemon lock: whatever socket is there is stale.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	old := umask(0o177)
	ln, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	if s.uloop, err = s.newUnixLoop(ln.(*net.UnixListener)); err != nil {
		ln.Close()
		return fmt.Errorf("listen on %s: %w", path, err)
	}
	s.ln = ln
	return nil
}

// Run serves until ctx is done (a clean stop: stop granting, let the leases
// go, write "stopped") or jsd decides to stop itself (idle timeout).
func (s *Server) Run(ctx context.Context) error {
	s.wg.Add(3)
	go func() { defer s.wg.Done(); s.uloop.run() }() // evloop.go
	s.serveTCP()
	if s.sup != nil {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.sup.run() }()
	}
	go func() { defer s.wg.Done(); s.statusWriter() }()
	go func() { defer s.wg.Done(); s.tokenWatcher() }()
	if s.sh != nil {
		s.sh.run()
	}
	err := s.loop(ctx)
	s.writeStatus(status.Stopping, "")
	s.ln.Close()
	s.closeTCP()
	if s.sup != nil {
		s.sup.shutdown()
	}
	if s.sh != nil {
		s.sh.close() // gives back its workers' jobs, cancels its submitters'
	}
	// Nothing is forgotten: without a journal every job still queued or
	// running ends as lost, and its submitter hears it; with one, they stay
	// in the journal and are queued again (detached) when jsd restarts.
	s.mu.Lock()
	if s.journal == nil {
		s.st.jobs.abandon("jsd stopped before the job ended")
	}
	s.flushDirty()
	s.st.closeAll()
	s.mu.Unlock()
	s.uloop.stop()
	if s.journal != nil {
		s.journal.Close()
	}
	s.pipe.Interrupt()
	close(s.st.watchReq)
	close(s.statusCh)
	s.wg.Wait()
	s.cleanup()
	s.writeStatus(status.Stopped, "")
	s.lock.Release()
	return err
}

func (s *Server) tcpHost() string {
	if s.tcp.main == nil {
		return ""
	}
	return s.cfg.Host
}

// openJournal opens --journal and brings its jobs back.
func (s *Server) openJournal() error {
	if s.cfg.Journal == "" {
		return nil
	}
	j, recs, warn, err := journal.Open(s.cfg.Journal)
	if warn != nil {
		s.log.Printf("warning: %v", warn)
	}
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	s.journal = j
	s.st.jobs.journal = j
	queued, results := s.st.jobs.restore(recs)
	if queued+results > 0 {
		s.log.Printf("journal %s: %d job(s) queued again, %d result(s) kept for 'jsctl wait'", s.cfg.Journal, queued, results)
	}
	return nil
}

// call runs fn on the scheduler state, under its lock, in the calling
// goroutine (never after the loop has ended). fn must not block.
func (s *Server) call(fn func(st *loopState)) { s.tryCall(fn) }

// tryCall is call, reporting whether fn ran.
func (s *Server) tryCall(fn func(st *loopState)) bool {
	ran := false
	s.exec(event{kind: evCall, fn: func(st *loopState) { ran = true; fn(st) }})
	return ran
}

// Abort makes Run return at once, leaving held leases behind (their
// commands keep the tokens they have; nothing new is granted).
func (s *Server) Abort() { s.exec(event{kind: evAbort}) }

func (s *Server) cleanup() {
	if s.pipe != nil {
		s.pipe.Close()
		if holders, err := jobserver.Holders(s.cfg.Paths.FIFO, os.Getpid(), s.st.bornAfter); err == nil && len(holders) == 0 {
			os.Remove(s.cfg.Paths.FIFO)
		}
	}
	if s.ln != nil {
		s.ln.Close()
	}
	if s.uloop != nil {
		s.uloop.stop()
	}
	if s.lock != nil && s.sf == nil {
		s.lock.Release()
	}
}

// acceptLoop serves a TCP listener (the unix socket has its loop,
// evloop.go): each connection is sniffed for its protocol.
func (s *Server) acceptLoop(ln net.Listener, kind connKind) {
	reserve := s.newReserve() // for the open-file limit (fdlimit.go)
	defer reserve.close()
	var cause error // why the last accept failed for lack of descriptors
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if isFDLimit(err) {
				cause = err
				if reserve.release() {
					continue // the next Accept takes a connection into its slot, to refuse it
				}
				s.noteNoReserve(err) // rate-limited
				time.Sleep(50 * time.Millisecond)
				reserve.take()
				continue
			}
			s.log.Printf("accept: %v", err)
			time.Sleep(50 * time.Millisecond) // do not spin
			continue
		}
		if reserve.atLimit() {
			s.refuse(nc, reserve, cause)
			continue
		}
		s.noteAccepted()
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.sniff(nc, kind) }()
	}
}

// startConn serves a native JSON-line connection; br holds bytes already
// read from nc (sniffing), or is nil.
func (s *Server) startConn(nc net.Conn, br *bufio.Reader, kind connKind) {
	c := newConn(s, nc, br, kind)
	s.exec(event{kind: evOpen, c: c})
	s.wg.Add(1)
	go func() { defer s.wg.Done(); c.readLoop() }() // the writer starts when needed (startWriter)
}

// tokenWatcher waits for tokens in the FIFO when the loop asks and tells it
// when one may be there.
func (s *Server) tokenWatcher() {
	for range s.st.watchReq {
		ok, err := s.pipe.Wait()
		if err != nil {
			s.log.Printf("wait for fifo: %v", err)
			time.Sleep(100 * time.Millisecond)
		}
		s.exec(event{kind: evReadable, ok: ok})
	}
}

// statusWriter rewrites the status file from the latest snapshot, at most
// ten times a second.
func (s *Server) statusWriter() {
	const minGap = 100 * time.Millisecond
	var last time.Time
	for range s.statusCh {
		if d := time.Until(last.Add(minGap)); d > 0 {
			time.Sleep(d)
		}
		last = time.Now()
		s.mu.Lock()
		if !s.st.ended {
			s.publish() // the snapshot is built here, at most ten times a second
		}
		s.mu.Unlock()
		s.sfMu.Lock()
		if doc := s.snap.Load(); doc != nil && (s.state == status.Running || s.state == status.Stopping) {
			if err := s.sf.Write(doc); err != nil {
				s.log.Printf("%v", err)
			}
		}
		s.sfMu.Unlock()
	}
}

// writeStatus writes a state change at once, with the latest counts.
func (s *Server) writeStatus(state, errText string) {
	if s.sf == nil {
		return
	}
	var doc status.Doc
	if d := s.snap.Load(); d != nil {
		doc = *d
	} else {
		doc = s.baseDoc()
	}
	doc.Status, doc.Error = state, errText
	s.sfMu.Lock()
	defer s.sfMu.Unlock()
	s.state = state
	if err := s.sf.Write(&doc); err != nil {
		s.log.Printf("%v", err)
	}
}

func (s *Server) baseDoc() status.Doc {
	return status.Doc{
		PID:       os.Getpid(),
		Version:   s.cfg.Version,
		StartedAt: s.started.UTC().Truncate(time.Millisecond),
		Socket:    s.cfg.Paths.Socket,
		FIFO:      s.cfg.Paths.FIFO,
		Host:      s.tcpHost(),
		Port:      s.tcp.port,
		Slots:     status.Slots{Total: s.cfg.Slots},
		Leases:    []status.Lease{},
		Queues:    []status.Queue{},
		Workers:   []status.Worker{},
		Jobs:      []status.Job{},
		Warnings:  s.warnings(),
	}
}

// publish stores a fresh snapshot (called by the loop only) and kicks the
// status writer.
func (s *Server) publish() {
	doc := s.st.snapshot()
	doc.Status = status.Running
	if s.st.stopping {
		doc.Status = status.Stopping
	}
	s.snap.Store(doc)
}

// kickStatus tells the status writer that the state changed.
func (s *Server) kickStatus() {
	select {
	case s.statusCh <- struct{}{}:
	default:
	}
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
