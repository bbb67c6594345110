package jsrun

import (
	"fmt"
	"regexp"
	"testing"
)

// validEnvName accepts exactly what the regexp it replaced accepted.
func TestValidEnvName(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	names := []string{"", "A", "a", "_", "A1", "1A", "_1", "A_B", "A-B", "A B", "A=B", "é", "A\n", "\n", "ÀB", "a.b", "9", "__", "Z9_z"}
	for c := 0; c < 256; c++ {
		names = append(names, string(rune(c)), "A"+string([]byte{byte(c)}), string([]byte{byte(c)})+"A")
	}
	for _, n := range names {
		if got, want := validEnvName(n), re.MatchString(n); got != want {
			t.Errorf("validEnvName(%q) = %v, the regexp says %v", n, got, want)
		}
	}
}

// envInt reads what fmt.Sscan read before it.
func TestEnvInt(t *testing.T) {
	for _, s := range []string{"", "0", "8", "65535", " 8", "8 ", "+8", "-3", "0x10", "010", "8x", "x", "1_000", "99999999999999999999"} {
		var want int
		fmt.Sscan(s, &want)
		if got := envInt(s); got != want {
			t.Errorf("envInt(%q) = %d, fmt.Sscan reads %d", s, got, want)
		}
	}
}
