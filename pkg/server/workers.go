package server

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// supervisor runs jsd's own workers (--workers N --worker-type T -- HANDLER):
// N jsworker processes on jsd's socket, each restarted with backoff when it
// dies, stopped (drained with SIGTERM) when jsd stops.
type supervisor struct {
	s    *Server
	bin  string
	mu   sync.Mutex // guards procs and stopping
	proc map[int]*os.Process
	stop bool
	done chan struct{}
}

// jsworkerBinary finds jsworker next to jsd, else on PATH.
func jsworkerBinary() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "jsworker")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return exec.LookPath("jsworker")
}

func (s *Server) startWorkers() error {
	if s.cfg.Workers == 0 {
		return nil
	}
	bin, err := jsworkerBinary()
	if err != nil {
		return &UsageError{Err: err, Hint: "install jsworker next to jsd or on PATH"}
	}
	s.sup = &supervisor{s: s, bin: bin, proc: map[int]*os.Process{}, done: make(chan struct{})}
	return nil
}

func (sv *supervisor) run() {
	var wg sync.WaitGroup
	for i := 0; i < sv.s.cfg.Workers; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); sv.keep(i) }()
	}
	wg.Wait()
}

// keep runs worker i until jsd stops, restarting it when it dies.
func (sv *supervisor) keep(i int) {
	cfg := &sv.s.cfg
	backoff := 100 * time.Millisecond
	for {
		args := []string{"--dir", cfg.Paths.Dir, "--type", cfg.WorkerType}
		if cfg.Paths.Socket != filepath.Join(cfg.Paths.Dir, "jsd.sock") {
			args = []string{"--type", cfg.WorkerType}
		}
		args = append(args, "--")
		args = append(args, cfg.WorkerHandler...)
		cmd := exec.Command(sv.bin, args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.Env = append(os.Environ(), "JS_DIR="+cfg.Paths.Dir, "JS_WORKER_INDEX="+strconv.Itoa(i))
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
		sv.mu.Lock()
		if sv.stop {
			sv.mu.Unlock()
			return
		}
		err := cmd.Start()
		if err == nil {
			sv.proc[cmd.Process.Pid] = cmd.Process
		}
		sv.mu.Unlock()
		started := time.Now()
		if err == nil {
			err = cmd.Wait()
			sv.mu.Lock()
			delete(sv.proc, cmd.Process.Pid)
			sv.mu.Unlock()
		}
		sv.mu.Lock()
		stopping := sv.stop
		sv.mu.Unlock()
		if stopping {
			return
		}
		if time.Since(started) > 30*time.Second {
			backoff = 100 * time.Millisecond
		}
		sv.s.log.Printf("worker %d exited (%v); restarting in %v", i, err, backoff)
		select {
		case <-sv.done:
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// shutdown drains the workers (SIGTERM) and waits for them.
func (sv *supervisor) shutdown() {
	sv.mu.Lock()
	sv.stop = true
	close(sv.done)
	for _, p := range sv.proc {
		p.Signal(syscall.SIGTERM)
	}
	sv.mu.Unlock()
}
