// Command jsworker serves typed jobs from jsd by running a handler per job.
package main

import (
	"os"

	"github.com/js-toolkit/js/pkg/cli/cmdline"
	"github.com/js-toolkit/js/pkg/cli/jsworker"
)

func main() { os.Exit(jsworker.Main(os.Args[1:], cmdline.OS())) }
