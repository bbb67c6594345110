package server

import (
	"path/filepath"
	"testing"
)

// With --journal a job can end (here: cancelled) before its acknowledgement
// is out of the disk; until its submitter has both, its id is not free: a
// submit of the same id in that window is refused as id_exists, not taken
// as a new job whose replies the client could not tell from the first's.
func TestJournalIDHeldUntilOutcomeDelivered(t *testing.T) {
	s := startTestServer(t, func(c *Config) { c.Journal = filepath.Join(t.TempDir(), "jobs.db") })
	n := dialNative(t, s)
	// One write: all three are handled under one lock, before the journal's
	// commit can acknowledge the first.
	n.send(`{"cmd":"do","type":"t","id":"X","arg":1,"req":1}` + "\n" +
		`{"cmd":"cancel","id":"X","req":2}` + "\n" +
		`{"cmd":"do","type":"t","id":"X","arg":2,"req":3}`)
	got := map[string]string{}
	for i := 0; i < 4; i++ {
		m := n.read()
		key := string(m["cmd"]) + " req=" + string(m["req"])
		got[key] = string(m["code"])
	}
	for _, want := range []string{`"queued" req=1`, `"ok" req=2`, `"cancelled" req=`, `"error" req=3`} {
		if _, ok := got[want]; !ok {
			t.Errorf("no %s among the replies %v", want, got)
		}
	}
	if c := got[`"error" req=3`]; c != `"id_exists"` {
		t.Errorf("the second submit of X: error code %s, want id_exists (replies %v)", c, got)
	}
	// Once X's outcome is out, the id is free again.
	n.send(`{"cmd":"do","type":"t","id":"X","arg":3,"req":4}`)
	if m := n.expectCmd("queued"); string(m["req"]) != "4" {
		t.Errorf("resubmit of X after its outcome: %v", m)
	}
}
