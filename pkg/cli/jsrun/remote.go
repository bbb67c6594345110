package jsrun

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/js-toolkit/js/pkg/cli/cmdline"
	"github.com/js-toolkit/js/pkg/cli/outcome"
	"github.com/js-toolkit/js/pkg/client"
	"github.com/js-toolkit/js/pkg/wire"
	"github.com/js-toolkit/js/pkg/worker"
)

// remote ships the command to a worker of --type and behaves as if it ran
// here: same output, same exit status.
func (r *run) remote() (int, error) {
	c, err := client.Dial(r.paths.Socket)
	if errors.Is(err, client.ErrNoDaemon) && !r.cli.NoAutostart {
		if err = r.autostart(); err == nil {
			for {
				c, err = client.Dial(r.paths.Socket)
				if err == nil || time.Now().After(r.autostartDeadline) {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	if err != nil {
		if errors.Is(err, client.ErrNoDaemon) {
			return 0, cmdline.WithHint(err, ExitUnavailable, fmt.Sprintf("start one with 'jsd --dir %s &'", r.paths.Dir))
		}
		return 0, err
	}
	defer c.Close()
	arg, _ := json.Marshal(worker.Command{Argv: r.cli.Command})
	id, err := c.Submit(client.Job{ID: r.cli.ID, Type: r.cli.Type, Arg: arg, Priority: r.cli.Priority,
		Retries: r.cli.Retries, Detach: r.cli.Detach})
	if err != nil {
		if client.IsCode(err, wire.CodeFDLimit) {
			return 0, cmdline.WithHint(err, ExitUnavailable, client.FDLimitHint+"; the job was not submitted")
		}
		var ce *client.Error
		if errors.As(err, &ce) {
			return 0, cmdline.WithHint(err, ExitRejected, "")
		}
		return 0, err
	}
	if r.cli.Detach {
		fmt.Fprintln(r.stdio.Out, id)
		return 0, nil
	}
	// Ctrl-C and friends cancel the job, as they would kill a local command.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	var deadline time.Time
	if r.timeout >= 0 {
		deadline = time.Now().Add(r.timeout)
	}
	type result struct {
		o   client.Outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		o, err := c.NextOutcome(time.Time{})
		done <- result{o, err}
	}()
	var timer <-chan time.Time
	if !deadline.IsZero() {
		timer = time.After(time.Until(deadline))
	}
	var killedBy syscall.Signal
	for {
		select {
		case sig := <-sigs:
			killedBy = sig.(syscall.Signal)
			c.SendCancel(id, killedBy.String())
		case <-timer:
			c.SendCancel(id, "TERM")
			fmt.Fprintf(r.stdio.Err, "jsrun: error: job %s did not end within --timeout; cancelled\n", id)
			return ExitBlocked, nil
		case res := <-done:
			if res.err != nil {
				return 0, fmt.Errorf("job %s: %w", id, res.err)
			}
			return r.report(res.o, killedBy), nil
		}
	}
}

// report shows the job's output and returns jsrun's status.
func (r *run) report(o client.Outcome, killedBy syscall.Signal) int {
	if o.State == "cancelled" && killedBy != 0 {
		return 128 + int(killedBy) // as if the signal had killed it here
	}
	return outcome.Show(o, r.stdio.Out, r.stdio.Err, "jsrun")
}
