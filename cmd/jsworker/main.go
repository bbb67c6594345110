// Command jsworker serves typed jobs from jsd by running a handler per job.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "jsworker: error: not available yet: the job queues are being built (issue: job queues and workers)")
	fmt.Fprintln(os.Stderr, "jsworker: hint: use jsrun -- CMD to run commands in the machine's slots meanwhile")
	os.Exit(69)
}
