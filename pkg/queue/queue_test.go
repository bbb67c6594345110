package queue

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sort"
	"strconv"
	"testing"
)

func push(m *Memory, id string, typ string, prio int32, owner Owner) Ref {
	return m.Push(&Job{ID: id, Type: typ, Priority: prio, Arg: []byte(`"` + id + `"`)}, owner, 7, true)
}

func pop(m *Memory, typ string) (string, bool) {
	r := m.Peek(typ)
	if r == 0 {
		return "", false
	}
	var j Job
	m.Load(r, &j)
	m.Remove(r)
	return j.ID, true
}

func TestPriorityThenFIFO(t *testing.T) {
	m := NewMemory()
	in := []struct {
		id   string
		prio int32
	}{{"a", 0}, {"b", 5}, {"c", 0}, {"d", 5}, {"e", -1}, {"f", 9}}
	for _, x := range in {
		push(m, x.id, "t", x.prio, 0)
	}
	want := []string{"f", "b", "d", "a", "c", "e"}
	for i, w := range want {
		if id, _ := pop(m, "t"); id != w {
			t.Fatalf("pop %d: got %q, want %s", i, id, w)
		}
	}
	if _, ok := pop(m, "t"); ok || m.Len("t") != 0 || len(m.Types()) != 0 || m.Total() != 0 {
		t.Fatal("store not empty")
	}
}

func TestRequeueKeepsPlace(t *testing.T) {
	m := NewMemory()
	a := &Job{ID: "a", Type: "t", Arg: []byte("1")}
	b := &Job{ID: "b", Type: "t", Arg: []byte("2")}
	m.Push(a, 0, 0, true)
	m.Push(b, 0, 0, false) // kept by the scheduler
	r := m.Peek("t")
	var got Job
	m.Load(r, &got)
	if got.ID != "a" || string(got.Arg) != "1" || got.Seq != a.Seq {
		t.Fatalf("got %+v", got)
	}
	m.Remove(r)
	m.Push(&got, 0, 0, true) // a worker died: a goes back ahead of b
	if r := m.Peek("t"); r != got.Ref || m.Find("a") != r || m.Find("b") != 0 {
		t.Fatal("requeued job lost its place")
	}
}

func TestLoadKeepsFields(t *testing.T) {
	m := NewMemory()
	long := make([]byte, 10000)
	for i := range long {
		long[i] = byte('a' + i%26)
	}
	for _, arg := range [][]byte{[]byte("null"), long[:4090], long} {
		in := Job{ID: "42", NumID: true, Type: "t", Arg: arg, Seq: 9, Priority: -3, Retries: -1, Attempts: 2, Submitted: 1234}
		r := m.Push(&in, 5, 3, true)
		var out Job
		o, tag := m.Load(r, &out)
		if o != 5 || tag != 3 || out.ID != "42" || !out.NumID || out.Type != "t" || string(out.Arg) != string(arg) ||
			out.Seq != 9 || out.Priority != -3 || out.Retries != -1 || out.Attempts != 2 || out.Submitted != 1234 ||
			out.Ref != r || m.Submitted(r) != 1234 || m.Find("42") != r {
			t.Fatalf("%d-byte arg: got %+v", len(arg), out)
		}
		if m.Remove(r) != 5 || m.Find("42") != 0 || m.Total() != 0 {
			t.Fatal("not removed")
		}
	}
}

// TestRandom checks the store against a plain model under random pushes,
// removals and owners.
func TestRandom(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	m := NewMemory()
	type live struct {
		j     Job
		owner Owner
		data  bool
	}
	model := map[Ref]*live{}
	next := 0
	for step := range 60000 {
		if rnd.IntN(100) < 55 || len(model) == 0 {
			next++
			id := strconv.Itoa(next)
			if rnd.IntN(2) == 0 {
				id = fmt.Sprintf("job-%d-%s", next, string(make([]byte, rnd.IntN(200))))
			}
			l := &live{j: Job{ID: id, Type: strconv.Itoa(rnd.IntN(3)), Priority: int32(rnd.IntN(4)),
				Arg: make([]byte, rnd.IntN(100))}, owner: Owner(rnd.IntN(4)), data: rnd.IntN(10) > 0}
			for i := range l.j.Arg {
				l.j.Arg[i] = byte(next + i)
			}
			r := m.Push(&l.j, l.owner, 0, l.data)
			if model[r] != nil {
				t.Fatalf("step %d: ref %d handed out twice", step, r)
			}
			model[r] = l
		} else {
			// remove the head of a type, or an owner's job, or any
			var r Ref
			switch rnd.IntN(3) {
			case 0:
				typ := strconv.Itoa(rnd.IntN(3))
				r = m.Peek(typ)
				var best *live
				for _, l := range model {
					if l.j.Type == typ && (best == nil || Before(&l.j, &best.j)) {
						best = l
					}
				}
				if (best == nil) != (r == 0) || best != nil && model[r] != best {
					t.Fatalf("step %d: peek %s: wrong job", step, typ)
				}
			case 1:
				r = m.OwnerFirst(Owner(rnd.IntN(4)))
			default:
				for r = range model {
					break
				}
			}
			if r == 0 {
				continue
			}
			l := model[r]
			if l.data {
				if m.Find(l.j.ID) != r {
					t.Fatalf("step %d: find %q", step, l.j.ID)
				}
				var got Job
				m.Load(r, &got)
				if got.ID != l.j.ID || string(got.Arg) != string(l.j.Arg) || got.Seq != l.j.Seq {
					t.Fatalf("step %d: load %q: got %q", step, l.j.ID, got.ID)
				}
			}
			if o := m.Remove(r); o != l.owner {
				t.Fatalf("step %d: owner %d, want %d", step, o, l.owner)
			}
			delete(model, r)
			if l.data && m.Find(l.j.ID) != 0 {
				t.Fatalf("step %d: %q found after its removal", step, l.j.ID)
			}
		}
		if step%5000 == 0 {
			counts := map[Owner]int{}
			for _, l := range model {
				counts[l.owner]++
			}
			for o := range Owner(4) {
				if o != 0 && m.OwnerLen(o) != counts[o] {
					t.Fatalf("step %d: owner %d has %d, want %d", step, o, m.OwnerLen(o), counts[o])
				}
			}
			n := 0
			m.Each("", func(Ref) { n++ })
			if n != len(model) || m.Total() != len(model) {
				t.Fatalf("step %d: %d/%d queued, want %d", step, n, m.Total(), len(model))
			}
		}
	}
	// drain in order
	for _, typ := range []string{"0", "1", "2"} {
		var ls []*live
		for _, l := range model {
			if l.j.Type == typ {
				ls = append(ls, l)
			}
		}
		sort.Slice(ls, func(a, b int) bool { return Before(&ls[a].j, &ls[b].j) })
		for _, l := range ls {
			r := m.Peek(typ)
			if model[r] != l {
				t.Fatalf("drain %s: out of order", typ)
			}
			m.Remove(r)
		}
	}
	if m.Total() != 0 || len(m.Types()) != 0 {
		t.Fatal("not drained")
	}
}

func BenchmarkPushPop(b *testing.B) {
	m := NewMemory()
	j := &Job{ID: "x", Type: "t", Arg: []byte(`"0123456789abcdef"`)}
	b.ReportAllocs()
	for b.Loop() {
		m.Push(j, 1, 0, true)
		m.Remove(m.Peek("t"))
	}
}

// BenchmarkQueued reports the store's memory per queued job of a 16-byte
// payload with an id as jsd assigns them ("j123"), less the payload.
func BenchmarkQueued(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		m := NewMemory()
		for i := range n {
			m.Push(&Job{ID: "j" + strconv.Itoa(i+1), Type: "t", Arg: []byte(`"0123456789abcdef"`)}, 1, 0, true)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/n-16, "B/job")
		runtime.KeepAlive(m)
	}
}
