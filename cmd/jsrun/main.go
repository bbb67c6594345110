// Command jsrun runs a command in a slot of the machine's pool.
package main

import (
	"os"
	"runtime"

	"github.com/js-toolkit/js/pkg/cli/cmdline"
	"github.com/js-toolkit/js/pkg/cli/jsrun"
)

func main() {
	// No allocation profiling in a process that lives a millisecond: a
	// sampled allocation walks the stack (and faults in the tables it reads).
	runtime.MemProfileRate = 0
	os.Exit(jsrun.Main(os.Args[1:], cmdline.OS()))
}
