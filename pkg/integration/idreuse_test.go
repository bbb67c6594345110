package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"testing"
)

// A job's id is free again once its outcome is out, however fast its worker
// answered: with the shared queues an outcome could come back before the
// cluster's acknowledgement of the submit, and the id then stayed taken for
// good (the next submit of it: id_exists, and a queued job counted forever).
func TestIDFreeOnceItsOutcomeIsOut(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, start starter) {
		d := start(t)
		// Two workers that answer at once, 64 at a time each.
		for range 2 {
			w := dialLines(t, d.dir)
			w.send(`{"cmd":"can_do","types":["echo"],"concurrency":64}` + "\r\n")
			go echoWorker(w)
		}
		s := dialLines(t, d.dir)
		const n = 3000
		for pass := 1; pass <= 3; pass++ {
			sent, got := 0, 0
			for got < n {
				for sent < n && sent-got < 128 {
					s.send(fmt.Sprintf(`{"cmd":"do","id":"k%d","type":"echo","arg":1}`+"\r\n", sent))
					sent++
				}
				if m := s.msg(); m["cmd"] != "did" {
					t.Fatalf("pass %d, after %d outcomes: %v", pass, got, m)
				}
				got++
			}
		}
		m := d.metrics()
		if m["jobs_queued"] != float64(0) || m["jobs_running"] != float64(0) {
			t.Errorf("after every outcome: jobs_queued %v, jobs_running %v; want 0", m["jobs_queued"], m["jobs_running"])
		}
	})
}

// echoWorker answers every job at once with did, until its connection ends.
func echoWorker(w *lineClient) {
	r := bufio.NewReader(w.nc)
	bw := bufio.NewWriter(w.nc)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		if i := bytes.Index(line, []byte(`"id":"`)); bytes.HasPrefix(line, []byte(`{"cmd":"do",`)) && i > 0 {
			if j := bytes.IndexByte(line[i+6:], '"'); j > 0 {
				fmt.Fprintf(bw, `{"cmd":"did","id":"%s","res":1}`+"\r\n", line[i+6:i+6+j])
			}
		}
		if r.Buffered() == 0 && bw.Flush() != nil {
			return
		}
	}
}
