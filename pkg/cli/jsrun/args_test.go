package jsrun

import (
	"bytes"
	"os"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/alecthomas/kong"
)

// kongParse reads args with kong from the CLI struct's tags: the
// specification parseArgs follows. exited is true when kong answered by
// itself (--help).
func kongParse(t testing.TB, args []string, out *bytes.Buffer) (cli CLI, exited bool, err error) {
	t.Helper()
	if out == nil {
		out = new(bytes.Buffer)
	}
	p, err := kong.New(&cli, kong.Name("jsrun"), kong.Description(description),
		kong.Exit(func(int) { panic(kongExit{}) }), kong.Writers(out, out))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(kongExit); !ok {
				panic(r)
			}
			exited = true
		}
	}()
	_, err = p.Parse(args)
	return cli, false, err
}

type kongExit struct{}

// sameAsKong fails t when parseArgs reads args otherwise than kong.
func sameAsKong(t testing.TB, args []string) {
	t.Helper()
	want, exited, kerr := kongParse(t, args, nil)
	got, act, err := parseArgs(args)
	switch {
	case exited:
		if err != nil || act != actHelp {
			t.Errorf("%q: kong shows the help; parseArgs: action %d, error %v", args, act, err)
		}
		return
	case kerr != nil:
		if err == nil {
			t.Errorf("%q: kong refuses it (%v); parseArgs accepts it: %+v", args, kerr, got)
		}
		return
	case err != nil:
		t.Errorf("%q: kong accepts it (%+v); parseArgs: %v", args, want, err)
		return
	}
	if act != actRun && (act != actVersion || !want.Version) {
		t.Errorf("%q: parseArgs wants action %d, kong %+v", args, act, want)
	}
	// kong leaves empty lists empty, not nil; the same to jsrun.
	for _, c := range []*CLI{&got, &want} {
		for _, l := range []*[]string{&c.Env, &c.Unset, &c.Command} {
			if len(*l) == 0 {
				*l = nil
			}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%q:\nparseArgs %+v\nkong      %+v", args, got, want)
	}
}

var parseCorpus = [][]string{
	{}, {"--"}, {"--", "--"}, {"--", "true"}, {"--exec", "--", "make", "-j", "--", "x"}, {"--", "sh", "-c", "echo --exec"},
	{"true"}, {"make", "--slots", "2"}, {"x", "--", "y"}, {"x", "-h"}, {"-", "y"},
	{"--slots", "2", "--", "x"}, {"--slots=2", "x"}, {"--slots", "-1", "--", "x"}, {"--slots=-1", "x"},
	{"--slots", "0x10", "x"}, {"--slots", "+3", "x"}, {"--slots", "010", "x"}, {"--slots", "1_0", "x"},
	{"--slots", "99999999999999999999", "x"}, {"--slots", " 2", "x"}, {"--slots"}, {"--slots", "--", "x"}, {"--slots=2=3", "x"},
	{"--timeout", "-1", "x"}, {"--timeout=-2.5e1", "x"}, {"--timeout", "inf", "x"}, {"--timeout", "0x1p-2", "x"},
	{"--timeout", "1_0", "x"}, {"--timeout", " 2", "x"}, {"--max-load", "1e400", "x"}, {"--max-load=0.5", "--", "x"},
	{"--gate", "-x", "y"}, {"--gate", "--", "y"}, {"--gate", "--exec", "y"}, {"--gate=--exec", "y"}, {"--gate", "", "x"},
	{"--exec=true", "x"}, {"--exec=false", "x"}, {"--exec=1", "x"}, {"--exec=yes", "x"}, {"--exec=YES", "x"}, {"--exec=maybe", "x"},
	{"--exec", "--exec", "x"}, {"--no-autostart", "--", "x"}, {"--no-autostart=false", "x"}, {"--detach=no", "x"},
	{"--env", "A=1", "--env=B", "x"}, {"--env", "a,b", "x"}, {"--unset", "A", "--env", "A=2", "--unset=B", "--", "x"},
	{"--jobserver-style", "fifo", "x"}, {"--jobserver-style", "FIFO", "x"}, {"--jobserver-style=", "x"},
	{"--dir", "", "x"}, {"--dir="}, {"--dir", "/tmp/d", "--socket", "/tmp/s", "--pdeathsig", "TERM", "--", "x"},
	{"--min-free-mem", "2G", "--max-load", "3", "x"},
	{"--type", "t", "--priority", "5", "--id", "j1", "--retries", "2", "--detach", "--", "cmd", "a"},
	{"--priority", "-3", "--type", "t", "x"}, {"--priority=-3", "--type=t", "x"},
	{"-x", "y"}, {"-hx"}, {"---x", "y"}, {"--Exec", "x"}, {"--bogus", "--", "x"}, {"--ex", "x"},
	{"-h"}, {"--help"}, {"--help", "x"}, {"-hh"}, {"--version"}, {"--version", "x"}, {"--version", "--bogus"},
	{"--bogus", "--version"}, {"--slots", "x", "--help"}, {"--help", "--version"}, {"--version", "--help"},
}

// parseArgs reads jsrun's command lines as kong reads the CLI struct.
func TestParseMatchesKong(t *testing.T) {
	for _, args := range parseCorpus {
		sameAsKong(t, args)
	}
}

// A command line's bytes reach the command as they are, valid UTF-8 or not
// (a file name is bytes); kong would have made \xe5 into U+FFFD.
func TestParseKeepsBytes(t *testing.T) {
	args := []string{"--gate=\xe5", "--env", "A=\xff", "--", "cat", "f\xe5"}
	cli, _, err := parseArgs(args)
	if err != nil || cli.Gate != args[0][7:] || cli.Env[0] != args[2] || cli.Command[2] != args[5] {
		t.Fatalf("parseArgs(%q) = %+v, %v", args, cli, err)
	}
}

// Command lines put together from jsrun's flags, values and commands.
func FuzzParseMatchesKong(f *testing.F) {
	for _, args := range parseCorpus {
		f.Add(strings.Join(args, "\x00"))
	}
	f.Fuzz(func(t *testing.T, s string) {
		var args []string
		if s != "" {
			args = strings.Split(s, "\x00")
		}
		if len(args) > 12 || !utf8.ValidString(s) {
			return // kong turns invalid UTF-8 into U+FFFD; jsrun passes it on (TestParseKeepsBytes)
		}
		sameAsKong(t, args)
	})
}

// help.txt is kong's help for the CLI struct at 80 columns. To update it:
// JSRUN_UPDATE_HELP=1 go test ./pkg/cli/jsrun -run TestHelpText
func TestHelpText(t *testing.T) {
	t.Setenv("COLUMNS", "80")
	var out bytes.Buffer
	if _, exited, err := kongParse(t, []string{"--help"}, &out); !exited || err != nil {
		t.Fatalf("kong --help: exited %v, %v", exited, err)
	}
	if os.Getenv("JSRUN_UPDATE_HELP") != "" {
		if err := os.WriteFile("help.txt", out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if out.String() != helpText {
		t.Errorf("help.txt is not kong's help for the CLI struct; run: JSRUN_UPDATE_HELP=1 go test ./pkg/cli/jsrun -run TestHelpText\nkong:\n%s", out.String())
	}
}
