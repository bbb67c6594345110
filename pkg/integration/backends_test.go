package integration

import "testing"

// The job-queue tests run against both queue backends: jsd's memory (the
// embedded default) and NATS JetStream (a node embedded in the jsd, with
// its own store in the test's dir). The semantics must not differ.
var backends = []struct {
	name string
	args []string
}{
	{"memory", nil},
	{"jetstream", []string{"--nats-embed", "--nats-name", "t1"}},
}

// starter starts a jsd on the backend under test.
type starter func(t testing.TB, args ...string) *daemon

// forBackends runs f once per backend, in parallel subtests.
func forBackends(t *testing.T, f func(t *testing.T, start starter)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f(t, func(t testing.TB, args ...string) *daemon {
				t.Helper()
				return startJSD(t, append(append([]string(nil), b.args...), args...)...)
			})
		})
	}
}
