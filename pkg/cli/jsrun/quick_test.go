package jsrun

import (
	"reflect"
	"testing"

	"github.com/alecthomas/kong"
)

// The quick path must fill the CLI exactly as kong does, defaults included.
func TestQuickParseMatchesKong(t *testing.T) {
	for _, args := range [][]string{
		{"--", "true"},
		{"--exec", "--", "make", "-j", "--", "x"},
		{"--", "sh", "-c", "echo --exec"},
	} {
		var quick, slow CLI
		if !quickParse(&quick, args) {
			t.Fatalf("%q: quick path refused", args)
		}
		p, err := kong.New(&slow, kong.Vars{"version": "x"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Parse(args); err != nil {
			t.Fatalf("%q: kong: %v", args, err)
		}
		if !reflect.DeepEqual(quick, slow) {
			t.Errorf("%q:\nquick %+v\nkong  %+v", args, quick, slow)
		}
	}
	for _, args := range [][]string{{}, {"--"}, {"true"}, {"--slots", "2", "--", "x"}, {"--exec"}, {"--exec", "x"}, {"--type", "t", "--", "x"}} {
		var c CLI
		if quickParse(&c, args) {
			t.Errorf("%q: the quick path must leave this to kong", args)
		}
	}
}
