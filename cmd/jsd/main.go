// Command jsd is the daemon that owns the machine's slots and job queues.
package main

import (
	"os"

	"github.com/js-toolkit/js/pkg/cli/cmdline"
	"github.com/js-toolkit/js/pkg/cli/jsd"
)

func main() { os.Exit(jsd.Main(os.Args[1:], cmdline.OS())) }
