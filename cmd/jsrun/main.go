// Command jsrun runs a command in a slot of the machine's pool.
package main

import (
	"os"

	"github.com/js-toolkit/js/pkg/cli/cmdline"
	"github.com/js-toolkit/js/pkg/cli/jsrun"
)

func main() { os.Exit(jsrun.Main(os.Args[1:], cmdline.OS())) }
