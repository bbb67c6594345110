// Package nesting decides when a process already runs in a slot, so that a
// nested jsrun borrows that slot instead of taking another token (which
// could deadlock a full pool), and makes the borrow exclusive.
//
// The rule (README "Nesting"): a process that runs in a slot owns it, as
// make's implicit slot, and lends it to one descendant at a time. Two kinds
// of process run in a slot:
//   - the command a jsrun started on a lease or a borrowed slot: jsrun names
//     itself in $JS_SLOT ("PID:STARTTIME") for its descendants;
//   - a make recipe, when make takes part in a jobserver (MAKEFLAGS names
//     one): make runs each recipe in its implicit slot or on a token.
//
// A jsrun walks up from itself through its ancestors. The first process it
// meets that is a recipe (its parent is make) or the $JS_SLOT holder names
// the slot. The borrow is an abstract unix socket bound under that name: the
// kernel makes the bind exclusive and frees it when the borrower dies, so a
// killed borrower leaks nothing.
package nesting

import (
	"errors"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/js-toolkit/js/pkg/jobserver"
)

// EnvSlot names the process whose slot descendants may borrow.
const EnvSlot = "JS_SLOT"

// Holder identifies one process for good: pid and start time.
type Holder struct {
	PID   int
	Start uint64
}

func (h Holder) String() string { return strconv.Itoa(h.PID) + ":" + strconv.FormatUint(h.Start, 10) }

// Self is this process as a holder.
func Self() (Holder, bool) {
	st, ok := jobserver.StartTime(os.Getpid())
	return Holder{PID: os.Getpid(), Start: st}, ok
}

// ParseHolder reads a $JS_SLOT value.
func ParseHolder(s string) (Holder, bool) {
	p, st, ok := strings.Cut(s, ":")
	if !ok {
		return Holder{}, false
	}
	pid, err1 := strconv.Atoi(p)
	start, err2 := strconv.ParseUint(st, 10, 64)
	if err1 != nil || err2 != nil || pid <= 0 {
		return Holder{}, false
	}
	return Holder{PID: pid, Start: start}, true
}

// maxDepth bounds the walk up the process tree.
const maxDepth = 256

// Find returns the slot this process runs in, if any: the holder named by
// slotEnv when it is an ancestor, or the nearest make recipe among the
// ancestors when inMake (MAKEFLAGS names a jobserver). Each process on the
// way is read once (/proc/PID/stat: start time, parent, command name).
func Find(slotEnv string, inMake bool) (Holder, bool) {
	holder, haveHolder := ParseHolder(slotEnv)
	if !haveHolder && !inMake {
		return Holder{}, false
	}
	pid := os.Getpid()
	st, ok := jobserver.StatOf(pid)
	for depth := 0; pid > 1 && depth < maxDepth; depth++ {
		if !ok {
			return Holder{}, false
		}
		if haveHolder && pid == holder.PID {
			if st.Start != holder.Start {
				return Holder{}, false // pid reused: the holder is gone
			}
			return holder, true
		}
		ppid := st.PPID
		pst, pok := jobserver.StatOf(ppid)
		if inMake && pok && isMake(pst.Comm) {
			return Holder{PID: pid, Start: st.Start}, true
		}
		pid, st, ok = ppid, pst, pok
	}
	return Holder{}, false
}

func isMake(comm string) bool {
	switch comm {
	case "make", "gmake", "remake":
		return true
	}
	return false
}

// Borrow is a held borrow of a slot; Close gives it back.
type Borrow struct{ fd int }

// ErrTaken means another descendant already borrows that slot.
var ErrTaken = errors.New("slot already lent")

// TryBorrow takes the slot of h if no other process borrows it now. The
// socket is made with plain system calls (it is never read: it only holds
// its name), so a jsrun never starts Go's network poller for it.
func TryBorrow(h Holder) (*Borrow, error) {
	name := "@js-slot/" + strconv.Itoa(os.Getuid()) + "/" + h.String()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, listenError(name, "socket", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: name}); err != nil {
		unix.Close(fd)
		if err == unix.EADDRINUSE {
			return nil, ErrTaken
		}
		return nil, listenError(name, "bind", err)
	}
	if err := unix.Listen(fd, 1); err != nil {
		unix.Close(fd)
		return nil, listenError(name, "listen", err)
	}
	return &Borrow{fd: fd}, nil
}

func listenError(name, call string, err error) error {
	return &os.PathError{Op: "listen", Path: name, Err: os.NewSyscallError(call, err)}
}

// Close ends the borrow.
func (b *Borrow) Close() error {
	if b == nil || b.fd < 0 {
		return nil
	}
	err := unix.Close(b.fd)
	b.fd = -1
	return err
}

// KeepAcrossExec lets the borrow outlive an exec of this process (jsrun
// --exec): the socket's descriptor loses its close-on-exec flag.
func (b *Borrow) KeepAcrossExec() error {
	_, err := unix.FcntlInt(uintptr(b.fd), unix.F_SETFD, 0)
	return err
}
