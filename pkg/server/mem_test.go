package server

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// nullPeer is a submitter that drops what it is sent.
type nullPeer struct{}

func (nullPeer) sendJob(*job)                      {}
func (nullPeer) sendCancel(*job, string)           {}
func (nullPeer) sendOutcome(*job, json.RawMessage) {}

// BenchmarkQueuedJobMemory is W4 in process: it queues jobs of a 16-byte
// payload (as native "do" lines with no id bring them: jsd assigns the id)
// for one connected submitter and no worker, and reports the live heap per
// queued job (after a GC), less the 16-byte payload.
func BenchmarkQueuedJobMemory(b *testing.B) {
	const n = 1_000_000
	arg := json.RawMessage(`"0123456789abcdef"`)
	for b.Loop() {
		var js jobState
		js.init(0, time.Hour, 1000)
		p := &nullPeer{}
		runtime.GC()
		var m0 runtime.MemStats
		runtime.ReadMemStats(&m0)
		for range n {
			a := append(json.RawMessage(nil), arg...) // each decoded line makes its own
			j, code, msg := js.submit(p, submission{typ: "w4", arg: a, proto: protoNative})
			if j == nil {
				b.Fatal(code, msg)
			}
			js.accept(j, nil, nil)
			js.enqueue(j)
		}
		runtime.GC()
		var m1 runtime.MemStats
		runtime.ReadMemStats(&m1)
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/n-16, "heapB/job")
		runtime.KeepAlive(&js)
		if got := js.store.Len("w4"); got != n {
			b.Fatal(fmt.Sprint("queued ", got))
		}
	}
}
