package jobserver

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// Holders scans /proc for processes other than skipPID that hold the file at
// path open (compared by device and inode, so a renamed or deleted FIFO is
// still found). A process whose descriptor table cannot be read counts as a
// holder when it started at or after bornAfter (in clock ticks since boot,
// /proc/PID/stat field 22; 0 counts every such process): only a process that
// existed after the FIFO was made can have inherited it, and only if its
// real uid is ours (a set-uid program we started): another user's process
// cannot open our private FIFO. Kernel threads and zombies hold no files and
// never count.
func Holders(path string, skipPID int, bornAfter uint64) ([]int, error) {
	var target syscall.Stat_t
	if err := syscall.Stat(path, &target); err != nil {
		return nil, err
	}
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	var out []int
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid == skipPID {
			continue
		}
		fdDir := "/proc/" + name + "/fd"
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			if os.IsNotExist(err) {
				continue // gone
			}
			if st, ok := StartTime(pid); ok && st >= bornAfter && !holdsNoFiles(pid) && realUID(pid) == os.Getuid() {
				out = append(out, pid) // cannot tell: assume it holds it
			}
			continue
		}
		for _, fd := range fds {
			var st syscall.Stat_t
			if syscall.Stat(fdDir+"/"+fd.Name(), &st) != nil {
				continue
			}
			if st.Ino == target.Ino && st.Dev == target.Dev {
				out = append(out, pid)
				break
			}
		}
	}
	return out, nil
}

// pfKthread is PF_KTHREAD in /proc/PID/stat's flags (field 9).
const pfKthread = 0x00200000

// holdsNoFiles reports whether pid is a kernel thread or a zombie: either
// has no descriptors, though an unprivileged reader cannot see that.
func holdsNoFiles(pid int) bool {
	b, err := readProc("/proc/"+strconv.Itoa(pid)+"/stat", nil)
	if err != nil {
		return false
	}
	_, fields, ok := statFields(string(b))
	if !ok || len(fields) < 7 {
		return false
	}
	flags, _ := strconv.ParseUint(fields[6], 10, 64)
	return flags&pfKthread != 0 || fields[0] == "Z" || fields[0] == "X"
}

// ProcStat is what /proc/PID/stat says about a process that jsrun and jsd
// use: its command name, parent and start time.
type ProcStat struct {
	Comm  string // the command name (as /proc/PID/comm)
	PPID  int
	Start uint64 // clock ticks since boot (field 22): with the pid, one process for good
}

// StatOf reads /proc/PID/stat once.
func StatOf(pid int) (ProcStat, bool) {
	var buf [512]byte
	b, err := readProc("/proc/"+strconv.Itoa(pid)+"/stat", buf[:0])
	if err != nil {
		return ProcStat{}, false
	}
	comm, fields, ok := statFields(string(b))
	if !ok || len(fields) < 20 {
		return ProcStat{}, false
	}
	ppid, err1 := strconv.Atoi(fields[1])
	start, err2 := strconv.ParseUint(fields[19], 10, 64)
	if err1 != nil || err2 != nil {
		return ProcStat{}, false
	}
	return ProcStat{Comm: comm, PPID: ppid, Start: start}, true
}

// StartTime returns a process's start time in clock ticks since boot
// (/proc/PID/stat field 22); with the pid it names one process for good.
func StartTime(pid int) (uint64, bool) {
	st, ok := StatOf(pid)
	return st.Start, ok
}

// Parent returns a process's parent pid and its command name (comm).
func Parent(pid int) (ppid int, comm string, ok bool) {
	st, ok := StatOf(pid)
	return st.PPID, st.Comm, ok
}

// Comm returns a process's command name.
func Comm(pid int) string {
	var buf [64]byte
	b, err := readProc("/proc/"+strconv.Itoa(pid)+"/comm", buf[:0])
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// readProc reads a small file of /proc whole into buf (grown as needed)
// with raw system calls: os.ReadFile would first set up Go's poller for the
// descriptor, which a short-lived jsrun would otherwise never start, and
// the runtime's syscall path wakes its monitor thread when the process was
// idle (jsd reads a stat file at every jsrun's "started"). Opening and
// reading a stat or comm file of /proc does not block.
func readProc(path string, buf []byte) ([]byte, error) {
	p, err := syscall.BytePtrFromString(path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	atFDCWD := _AT_FDCWD
	var fd uintptr
	for {
		r, _, e := syscall.RawSyscall6(syscall.SYS_OPENAT, uintptr(atFDCWD), uintptr(unsafe.Pointer(p)),
			syscall.O_RDONLY|syscall.O_CLOEXEC, 0, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return nil, &os.PathError{Op: "open", Path: path, Err: e}
		}
		fd = r
		break
	}
	defer syscall.RawSyscall(syscall.SYS_CLOSE, fd, 0, 0)
	if cap(buf) == 0 {
		buf = make([]byte, 0, 512)
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		free := buf[len(buf):cap(buf)]
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&free[0])), uintptr(len(free)))
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return nil, &os.PathError{Op: "read", Path: path, Err: e}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+int(n)]
	}
}

// _AT_FDCWD is openat's "relative to the working directory".
const _AT_FDCWD = -100

// statFields splits /proc/PID/stat: the comm in parentheses (which may hold
// spaces and parentheses) and the fields after it, starting at field 3.
func statFields(s string) (comm string, fields []string, ok bool) {
	open := strings.IndexByte(s, '(')
	end := strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return "", nil, false
	}
	return s[open+1 : end], strings.Fields(s[end+1:]), true
}

// realUID is a process's real user id, -1 when unknown.
func realUID(pid int) int {
	b, err := readProc("/proc/"+strconv.Itoa(pid)+"/status", nil)
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				if uid, err := strconv.Atoi(f[0]); err == nil {
					return uid
				}
			}
		}
	}
	return -1
}
