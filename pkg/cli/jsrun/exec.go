package jsrun

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"github.com/js-toolkit/js/pkg/jobserver"
	"github.com/js-toolkit/js/pkg/launch"
	"golang.org/x/sys/unix"
)

// execInPlace replaces jsrun by the command (--exec). The lease lives on in
// the command: its connection to jsd (and a borrow's socket) stay open
// across the exec, so jsd frees the slot when the last process holding
// them exits. The pool's FIFO is passed on the descriptors it has now.
func (r *run) execInPlace(h *held, env []string, files []*os.File) (int, error) {
	path, err := exec.LookPath(r.cli.Command[0])
	if err != nil {
		fmt.Fprintf(r.stdio.Err, "jsrun: error: %s: %v\n", r.cli.Command[0], err)
		if errors.Is(err, os.ErrPermission) {
			return launch.ExitCannotRun, nil
		}
		return launch.ExitNotFound, nil
	}
	keep := func(fd int) error {
		_, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0)
		return err
	}
	if h.conn != nil {
		if err := h.conn.KeepAcrossExec(); err != nil {
			return 0, err
		}
	}
	if h.borrow != nil {
		if err := h.borrow.KeepAcrossExec(); err != nil {
			return 0, err
		}
	}
	if len(files) == 2 {
		// The pipe style names descriptors: use the ones we have.
		for _, f := range files {
			if err := keep(int(f.Fd())); err != nil {
				return 0, err
			}
		}
		old := getEnv(env, "MAKEFLAGS")
		auth := strconv.Itoa(int(files[0].Fd())) + "," + strconv.Itoa(int(files[1].Fd()))
		env = setEnv(env, "MAKEFLAGS", jobserver.WithAuth(old, h.total, auth), false)
	}
	err = syscall.Exec(path, r.cli.Command, env)
	fmt.Fprintf(r.stdio.Err, "jsrun: error: exec %s: %v\n", path, err)
	return launch.ExitCannotRun, nil
}
