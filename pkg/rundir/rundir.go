// Package rundir finds jsd's runtime directory and the files in it, and holds
// the daemon lock that makes jsd the only daemon serving a directory.
//
// Every tool (jsd, jsrun, jsworker, jsctl) resolves the directory the same
// way: --dir, else $JS_DIR, else $XDG_RUNTIME_DIR/js, else /tmp/js-$UID.
package rundir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Default file names inside the runtime directory.
const (
	SocketName = "jsd.sock"
	FIFOName   = "jobserver.fifo"
	StatusName = "status.json"
	LockName   = "jsd.lock"
	LogName    = "jsd.log"
)

// EnvDir is the environment variable that points every tool at one directory.
const EnvDir = "JS_DIR"

// Resolve returns the runtime directory: flag, else $JS_DIR, else
// $XDG_RUNTIME_DIR/js, else /tmp/js-$UID. The result is absolute.
func Resolve(flag string) string {
	d := flag
	if d == "" {
		d = os.Getenv(EnvDir)
	}
	if d == "" {
		if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
			d = filepath.Join(x, "js")
		}
	}
	if d == "" {
		d = filepath.Join(os.TempDir(), "js-"+strconv.Itoa(os.Getuid()))
	}
	if abs, err := filepath.Abs(d); err == nil {
		d = abs
	}
	return d
}

// Paths are the files of one runtime directory.
type Paths struct {
	Dir    string
	Socket string
	FIFO   string
	Status string
	Lock   string
	Log    string
}

// For returns the default paths inside dir.
func For(dir string) Paths {
	return Paths{
		Dir:    dir,
		Socket: filepath.Join(dir, SocketName),
		FIFO:   filepath.Join(dir, FIFOName),
		Status: filepath.Join(dir, StatusName),
		Lock:   filepath.Join(dir, LockName),
		Log:    filepath.Join(dir, LogName),
	}
}

// Ensure creates dir with mode 0700 if needed and checks that an existing
// directory is owned by us and not open to others, since it holds the socket
// and the FIFO whose permissions are the only access check on this machine.
func Ensure(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create runtime dir: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("runtime dir %s is not a directory", dir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("runtime dir %s belongs to uid %d, not to us (uid %d)", dir, st.Uid, os.Getuid())
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("runtime dir %s is open to others (%v) and cannot be made private: %w", dir, fi.Mode().Perm(), err)
		}
	}
	return nil
}

// ErrLocked is returned by Lock when a live jsd holds the directory.
type ErrLocked struct {
	Dir string
	PID int // 0 when unknown
}

func (e *ErrLocked) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("already running (pid %d) in %s", e.PID, e.Dir)
	}
	return fmt.Sprintf("already running in %s", e.Dir)
}

// Lock is the daemon lock: an flock on DIR/jsd.lock held for the daemon's life.
type Lock struct{ f *os.File }

// TakeLock takes the daemon lock without waiting and writes our pid into it.
func TakeLock(path string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			b := make([]byte, 32)
			n, _ := f.ReadAt(b, 0)
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b[:n])))
			return nil, &ErrLocked{Dir: filepath.Dir(path), PID: pid}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Release drops the lock (the kernel drops it too when the process dies).
func (l *Lock) Release() {
	if l != nil && l.f != nil {
		_ = l.f.Truncate(0)
		_ = l.f.Close()
		l.f = nil
	}
}

// LockHolder reports the pid written in a held lock file, or 0 when the lock
// is free (no live jsd serves the directory).
func LockHolder(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err == nil {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return 0
	}
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if pid == 0 {
		pid = -1
	}
	return pid
}
