// Command gofloor is the benchmark's floor for a Go command wrapper: the
// least any Go program that runs a command can do. It starts the Go
// runtime, forks and execs its arguments (looked up in $PATH), waits, and
// exits with the command's status (128+N when signal N killed it).
//
//	gofloor COMMAND [ARGS...]
//	gofloor -exec COMMAND [ARGS...]
//
// With -exec it execs the command in place instead (no fork, no wait): the
// floor for `jsrun --exec`, which does that after taking its slot.
//
// It imports only os and syscall so that its start-up cost is the runtime's,
// not a library's. scripts/bench builds it into a temporary directory.
package main

import (
	"os"
	"syscall"
)

func main() {
	args := os.Args[1:]
	inPlace := len(args) > 0 && args[0] == "-exec"
	if inPlace {
		args = args[1:]
	}
	if len(args) < 1 {
		os.Stderr.WriteString("usage: gofloor [-exec] COMMAND [ARGS...]\n")
		os.Exit(64)
	}
	path, ok := lookPath(args[0])
	if !ok {
		os.Stderr.WriteString("gofloor: " + args[0] + ": not found\n")
		os.Exit(127)
	}
	if inPlace {
		err := syscall.Exec(path, args, syscall.Environ())
		os.Stderr.WriteString("gofloor: " + err.Error() + "\n")
		os.Exit(126)
	}
	pid, err := syscall.ForkExec(path, args, &syscall.ProcAttr{
		Env:   syscall.Environ(),
		Files: []uintptr{0, 1, 2},
	})
	if err != nil {
		os.Stderr.WriteString("gofloor: " + err.Error() + "\n")
		os.Exit(126)
	}
	var ws syscall.WaitStatus
	for {
		_, err = syscall.Wait4(pid, &ws, 0, nil)
		if err != syscall.EINTR {
			break
		}
	}
	switch {
	case err != nil:
		os.Exit(70)
	case ws.Signaled():
		os.Exit(128 + int(ws.Signal()))
	default:
		os.Exit(ws.ExitStatus())
	}
}

// lookPath finds name as a shell would: as given when it holds a slash,
// else in the first $PATH entry where it is an executable file.
func lookPath(name string) (string, bool) {
	for i := 0; i < len(name); i++ {
		if name[i] == '/' {
			return name, true
		}
	}
	dirs, _ := syscall.Getenv("PATH")
	start := 0
	for i := 0; i <= len(dirs); i++ {
		if i < len(dirs) && dirs[i] != ':' {
			continue
		}
		dir := dirs[start:i]
		start = i + 1
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + name
		var st syscall.Stat_t
		if syscall.Stat(p, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFREG && syscall.Access(p, 1) == nil {
			return p, true
		}
	}
	return "", false
}
