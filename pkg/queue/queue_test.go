package queue

import "testing"

func TestPriorityThenFIFO(t *testing.T) {
	m := NewMemory()
	in := []struct {
		id   string
		prio int32
	}{{"a", 0}, {"b", 5}, {"c", 0}, {"d", 5}, {"e", -1}, {"f", 9}}
	for _, x := range in {
		m.Push(&Job{ID: x.id, Type: "t", Priority: x.prio})
	}
	want := []string{"f", "b", "d", "a", "c", "e"}
	for i, w := range want {
		j := m.Pop("t")
		if j == nil || j.ID != w {
			t.Fatalf("pop %d: got %v, want %s", i, j, w)
		}
	}
	if m.Pop("t") != nil || m.Len("t") != 0 || len(m.Types()) != 0 {
		t.Fatal("store not empty")
	}
}

func TestRequeueKeepsPlace(t *testing.T) {
	m := NewMemory()
	a := &Job{ID: "a", Type: "t"}
	b := &Job{ID: "b", Type: "t"}
	m.Push(a)
	m.Push(b)
	if got := m.Pop("t"); got != a {
		t.Fatalf("got %s", got.ID)
	}
	m.Push(a) // a worker died: a goes back ahead of b
	if got := m.Pop("t"); got != a {
		t.Fatalf("requeued job lost its place: got %s", got.ID)
	}
}

func TestRemove(t *testing.T) {
	m := NewMemory()
	jobs := make([]*Job, 10)
	for i := range jobs {
		jobs[i] = &Job{ID: string(rune('a' + i)), Type: "t", Priority: int32(i % 3)}
		m.Push(jobs[i])
	}
	if !m.Remove(jobs[4]) || m.Remove(jobs[4]) {
		t.Fatal("remove should succeed once")
	}
	if m.Len("t") != 9 {
		t.Fatalf("len %d", m.Len("t"))
	}
	prev := m.Pop("t")
	for j := m.Pop("t"); j != nil; j = m.Pop("t") {
		if j == jobs[4] {
			t.Fatal("removed job came back")
		}
		if Before(j, prev) {
			t.Fatalf("order broken: %s before %s", prev.ID, j.ID)
		}
		prev = j
	}
}

func BenchmarkPushPop(b *testing.B) {
	m := NewMemory()
	j := &Job{ID: "x", Type: "t"}
	b.ReportAllocs()
	for b.Loop() {
		m.Push(j)
		m.Pop("t")
	}
}
