package jsrun

import (
	_ "embed"
	"fmt"
	"strconv"
	"strings"
)

// jsrun reads its command line itself instead of with kong: linking kong
// costs every jsrun its package init and that of what it imports (go/doc,
// regexp, net/url, os/user: ~0.1-0.2 ms), in a tool make runs thousands of
// times. The CLI struct's kong tags stay the specification:
// TestParseMatchesKong and FuzzParseMatchesKong hold parseArgs to kong's
// reading of them, and TestHelpText to kong's help (help.txt).

//go:embed help.txt
var helpText string

// action is what the command line asks for besides a run.
type action int

const (
	actRun action = iota
	actHelp
	actVersion
)

type flagKind int

const (
	kindBool flagKind = iota
	kindInt
	kindFloat
	kindString
	kindList
)

// flagSpec is one of jsrun's flags, as its kong tags declare it.
type flagSpec struct {
	name string
	kind flagKind
	enum []string // allowed values (kindString)
	ref  func(*CLI) any
}

var flagSpecs = []flagSpec{
	{"dir", kindString, nil, func(c *CLI) any { return &c.Dir }},
	{"socket", kindString, nil, func(c *CLI) any { return &c.Socket }},
	{"slots", kindInt, nil, func(c *CLI) any { return &c.Slots }},
	{"timeout", kindFloat, nil, func(c *CLI) any { return &c.Timeout }},
	{"no-autostart", kindBool, nil, func(c *CLI) any { return &c.NoAutostart }},
	{"jobserver-style", kindString, []string{"pipe", "fifo"}, func(c *CLI) any { return &c.JobserverStyle }},
	{"pdeathsig", kindString, nil, func(c *CLI) any { return &c.Pdeathsig }},
	{"exec", kindBool, nil, func(c *CLI) any { return &c.Exec }},
	{"min-free-mem", kindString, nil, func(c *CLI) any { return &c.MinFreeMem }},
	{"max-load", kindFloat, nil, func(c *CLI) any { return &c.MaxLoad }},
	{"gate", kindString, nil, func(c *CLI) any { return &c.Gate }},
	{"env", kindList, nil, func(c *CLI) any { return &c.Env }},
	{"unset", kindList, nil, func(c *CLI) any { return &c.Unset }},
	{"version", kindBool, nil, func(c *CLI) any { return &c.Version }},
	{"type", kindString, nil, func(c *CLI) any { return &c.Type }},
	{"priority", kindInt, nil, func(c *CLI) any { return &c.Priority }},
	{"id", kindString, nil, func(c *CLI) any { return &c.ID }},
	{"retries", kindInt, nil, func(c *CLI) any { return &c.Retries }},
	{"detach", kindBool, nil, func(c *CLI) any { return &c.Detach }},
	{"help", kindBool, nil, nil},
}

// defaults is the CLI before any flag: the kong tags' defaults.
func defaults() CLI {
	return CLI{Slots: 1, Timeout: -1, JobserverStyle: "pipe", Pdeathsig: "KILL"}
}

// isFlag reports whether a stands where a value should for a flag (kong
// takes no value that looks like a flag unless it is given with =).
func isFlag(a string) bool { return len(a) > 1 && a[0] == '-' }

// parseArgs reads args as kong reads the CLI struct: flags up to the first
// argument that is not one (or "--"); that argument and everything after it
// are the command ("--" included, as kong's passthrough keeps it). Errors
// come before --help and --version, as with kong.
func parseArgs(args []string) (CLI, action, error) {
	cli := defaults()
	help := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !isFlag(a) {
			cli.Command = args[i:]
			break
		}
		if a == "--" {
			cli.Command = args[i:]
			break
		}
		if a[1] != '-' { // short flags: only -h, possibly clustered
			for _, c := range a[1:] {
				if c != 'h' {
					return CLI{}, actRun, fmt.Errorf("unknown flag -%c", c)
				}
				help = true
			}
			continue
		}
		name, val, hasVal := strings.Cut(a[2:], "=")
		spec := lookupFlag(name)
		if spec == nil {
			return CLI{}, actRun, unknownFlag(a[:2+len(name)])
		}
		if spec.kind == kindBool {
			b := true
			if hasVal {
				var err error
				if b, err = parseBool(val); err != nil {
					return CLI{}, actRun, fmt.Errorf("--%s: %v", name, err)
				}
			}
			if spec.name == "help" {
				help = help || b
			} else {
				*spec.ref(&cli).(*bool) = b
			}
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return CLI{}, actRun, fmt.Errorf("--%s: expected a value after it", name)
			}
			if isFlag(args[i+1]) {
				return CLI{}, actRun, fmt.Errorf("--%s: expected a value but got %q; perhaps try --%s=%q?", name, args[i+1], name, args[i+1])
			}
			i++
			val = args[i]
		}
		if err := setFlag(&cli, spec, val); err != nil {
			return CLI{}, actRun, err
		}
	}
	for _, spec := range flagSpecs {
		if spec.enum != nil {
			if v := *spec.ref(&cli).(*string); !contains(spec.enum, v) {
				return CLI{}, actRun, fmt.Errorf("--%s must be one of %s but got %q", spec.name, quoteAll(spec.enum), v)
			}
		}
	}
	switch {
	case help:
		return cli, actHelp, nil
	case cli.Version:
		return cli, actVersion, nil
	}
	return cli, actRun, nil
}

func lookupFlag(name string) *flagSpec {
	for i := range flagSpecs {
		if flagSpecs[i].name == name {
			return &flagSpecs[i]
		}
	}
	return nil
}

// unknownFlag names the flag and, for a near miss, the one meant.
func unknownFlag(flag string) error {
	name := strings.ToLower(strings.TrimLeft(flag, "-"))
	for _, s := range flagSpecs {
		if s.name == name || strings.HasPrefix(s.name, name) && len(name) >= 3 || strings.HasPrefix(name, s.name) {
			return fmt.Errorf("unknown flag %s, did you mean --%s?", flag, s.name)
		}
	}
	return fmt.Errorf("unknown flag %s", flag)
}

func setFlag(cli *CLI, spec *flagSpec, val string) error {
	switch p := spec.ref(cli).(type) {
	case *int:
		n, err := strconv.ParseInt(val, 0, strconv.IntSize)
		if err != nil {
			return fmt.Errorf("--%s: expected an integer but got %q", spec.name, val)
		}
		*p = int(n)
	case *float64:
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return fmt.Errorf("--%s: expected a number but got %q", spec.name, val)
		}
		*p = f
	case *string:
		*p = val
	case *[]string:
		*p = append(*p, val)
	}
	return nil
}

// parseBool reads a --flag=VALUE of a boolean flag as kong does.
func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true", "1", "yes":
		return true, nil
	case "false", "0", "no":
		return false, nil
	}
	return false, fmt.Errorf("a boolean flag's value must be true, 1, yes, false, 0 or no but got %q", v)
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

func quoteAll(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ",")
}
