package jsrun

import (
	"fmt"
	"github.com/js-toolkit/js/pkg/cli/cmdline"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// gates are the admission conditions (RhysU's acceptance gates, steve's
// --load-average / --min-memory-avail): checked before taking a slot and
// again once it is taken.
type gates struct {
	minFree int64   // bytes of MemAvailable; 0: no gate
	maxLoad float64 // 1-minute load; 0: no gate
	cmd     string  // shell command that must exit 0; "": no gate
}

// gatePoll is how often closed gates are checked again.
const gatePoll = 250 * time.Millisecond

func parseGates(cli *CLI) (gates, error) {
	g := gates{maxLoad: cli.MaxLoad, cmd: cli.Gate}
	if cli.MaxLoad < 0 {
		return g, usage("", "--max-load %v must not be negative", cli.MaxLoad)
	}
	if cli.MinFreeMem != "" {
		n, err := parseSize(cli.MinFreeMem)
		if err != nil {
			return g, usage("write a size such as 512M, 2G or 1048576", "--min-free-mem %q: %v", cli.MinFreeMem, err)
		}
		g.minFree = n
	}
	return g, nil
}

// parseSize reads 123, 64K, 512M, 2G, 1T (powers of 1024; a trailing B or
// iB is allowed).
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("not a size")
	}
	return int64(v * float64(mult)), nil
}

// admit reports whether every gate is open now, and if not, why.
func (g gates) admit() (bool, string) {
	if g.minFree > 0 {
		avail, err := memAvailable()
		if err == nil && avail < g.minFree {
			return false, fmt.Sprintf("MemAvailable %d MiB is under %d MiB", avail>>20, g.minFree>>20)
		}
	}
	if g.maxLoad > 0 {
		load, err := loadAvg()
		if err == nil && load > g.maxLoad {
			return false, fmt.Sprintf("load %.2f is over %.2f", load, g.maxLoad)
		}
	}
	if g.cmd != "" {
		c := exec.Command("/bin/sh", "-c", g.cmd)
		c.Stdout, c.Stderr = nil, os.Stderr
		if err := c.Run(); err != nil {
			return false, fmt.Sprintf("gate %q: %v", g.cmd, err)
		}
	}
	return true, ""
}

func (g gates) none() bool { return g.minFree == 0 && g.maxLoad == 0 && g.cmd == "" }

// wait blocks until the gates are open or the deadline passes (exit 75).
func (g gates) wait(deadline time.Time) error {
	if g.none() {
		return nil
	}
	for {
		ok, why := g.admit()
		if ok {
			return nil
		}
		if !deadline.IsZero() && time.Now().Add(gatePoll).After(deadline) {
			return blockedBy(why)
		}
		time.Sleep(gatePoll)
	}
}

func blockedBy(why string) error {
	return cmdline.Errorf(ExitBlocked, "", "not admitted before the timeout (%s); nothing was run", why)
}

func memAvailable() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no MemAvailable in /proc/meminfo")
}

func loadAvg() (float64, error) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("empty /proc/loadavg")
	}
	return strconv.ParseFloat(f[0], 64)
}
