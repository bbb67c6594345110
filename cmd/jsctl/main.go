// Command jsctl shows what jsd is doing and steers it.
package main

import (
	"os"

	"github.com/js-toolkit/js/pkg/cli/cmdline"
	"github.com/js-toolkit/js/pkg/cli/jsctl"
)

func main() { os.Exit(jsctl.Main(os.Args[1:], cmdline.OS())) }
