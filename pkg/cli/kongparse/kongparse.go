// Package kongparse parses a tool's command line with kong without letting
// kong exit the process: --help, --version and usage errors come back as an
// exit code. jsd, jsctl and jsworker use it; jsrun does not link kong (its
// start-up is paid per command, see pkg/cli/jsrun/args.go).
package kongparse

import (
	"fmt"

	"github.com/alecthomas/kong"
	"github.com/js-toolkit/js/pkg/cli/cmdline"
)

type exitCode int

// Parse parses args into cli with kong. It returns done=true with the exit
// code when kong has answered by itself (--help, --version) or the command
// line is wrong (usage: printed with a hint, code usageCode).
func Parse(tool string, cli any, args []string, stdio cmdline.Stdio, usageCode int, opts ...kong.Option) (ctx *kong.Context, code int, done bool) {
	opts = append([]kong.Option{
		kong.Name(tool),
		kong.Writers(stdio.Out, stdio.Err),
		kong.Exit(func(c int) { panic(exitCode(c)) }),
		kong.UsageOnError(),
	}, opts...)
	defer func() {
		if r := recover(); r != nil {
			c, ok := r.(exitCode)
			if !ok {
				panic(r)
			}
			ctx, code, done = nil, int(c), true
		}
	}()
	parser, err := kong.New(cli, opts...)
	if err != nil {
		return nil, cmdline.Report(stdio.Err, tool, err, 70), true
	}
	ctx, err = parser.Parse(args)
	if err != nil {
		fmt.Fprintf(stdio.Err, "%s: error: %v\n", tool, err)
		fmt.Fprintf(stdio.Err, "%s: hint: run '%s --help' for usage\n", tool, tool)
		return nil, usageCode, true
	}
	return ctx, 0, false
}
