package jsctl

import (
	"bufio"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procAlive reports whether pid is a live process that may be the jsd that
// started at startedAt: it exists, is not a zombie (a SIGKILLed jsd whose
// parent has not reaped it yet), and did not start after startedAt (then
// the pid was reused, as in a stale file from long ago). Without /proc it trusts kill(pid, 0).
func procAlive(pid int, startedAt time.Time) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) state ppid ... field 22 is the start time in clock ticks
	// since boot; comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return true
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return true
	}
	if f[0] == "Z" || f[0] == "X" {
		return false
	}
	if startedAt.IsZero() {
		return true
	}
	ticks, err := strconv.ParseUint(f[19], 10, 64)
	boot, ok := bootTime()
	if err != nil || !ok {
		return true
	}
	const clkTck = 100 // USER_HZ: 100 on every Linux architecture Go runs on
	start := boot.Add(time.Duration(ticks) * time.Second / clkTck)
	// A process that began after jsd wrote its start time is another one
	// (a stale file's pid, reused); the slack absorbs clock steps.
	return !start.After(startedAt.Add(time.Minute))
}

// bootTime is when the machine booted (btime in /proc/stat).
func bootTime() (time.Time, bool) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return time.Time{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "btime "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return time.Unix(n, 0), err == nil
		}
	}
	return time.Time{}, false
}
