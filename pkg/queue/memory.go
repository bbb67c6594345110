package queue

import (
	"encoding/binary"
	"hash/maphash"
)

// Memory is the in-memory store. Each queued job is a 64-byte record in a
// slab of 1024-record chunks; its id and arg, one after the other, are a
// block of a size class in a blob arena (an arg over 4 KiB is kept on its
// own); its type's heap and its owner's list hold 4-byte references; the
// id index is an open-addressed table of references with a byte of each
// id's hash beside it.
type Memory struct {
	recs    [][]rec // chunks of recChunk records
	used    uint32  // records ever handed out (bump), since the last reset
	freeRec Ref     // free records, linked through onext
	n       int     // queued jobs

	seq     uint64
	types   []typeQueue
	typeIdx map[string]uint32

	owners []ownerList // by Owner

	blobs [len(classSizes)]blobClass
	big   map[Ref][]byte // id+arg over maxBlob bytes

	idx  []Ref   // id index: open addressing, linear probing; 0 is empty
	tags []uint8 // the top byte of each entry's hash
	idxN int
	hash maphash.Seed
}

const (
	recChunk  = 1024
	blobChunk = 16 << 10

	noData   = 0xff // the record has no id and arg (the scheduler keeps the job)
	bigData  = 0xfe // in Memory.big
	flagNum  = 1    // the id was a JSON number
	minIndex = 1024 // the id index's smallest size
)

// rec is one queued job: pointer-free, 64 bytes.
type rec struct {
	seq       uint64
	submitted int64
	prio      int32
	retries   int32
	attempts  int32
	pos       int32 // in its type's heap
	typ       uint32
	owner     Owner
	onext     Ref // owner's list; the free list
	oprev     Ref
	blob      uint32 // block in its class
	idLen     uint32
	argLen    uint32
	class     uint8
	tag       uint8
	flags     uint8
	_         uint8
}

type typeQueue struct {
	name string
	heap []Ref
}

type ownerList struct {
	head Ref
	n    uint32
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{typeIdx: map[string]uint32{}, hash: maphash.MakeSeed()}
}

func (m *Memory) rec(r Ref) *rec {
	i := uint32(r) - 1
	return &m.recs[i/recChunk][i%recChunk]
}

func (m *Memory) newRec() Ref {
	if r := m.freeRec; r != 0 {
		m.freeRec = m.rec(r).onext
		return r
	}
	if m.used%recChunk == 0 && int(m.used/recChunk) == len(m.recs) {
		m.recs = append(m.recs, make([]rec, recChunk))
	}
	m.used++
	return Ref(m.used)
}

// reset gives the memory of a drained store back, but for its first chunk.
func (m *Memory) reset() {
	clear(m.recs[min(len(m.recs), 1):])
	m.recs = m.recs[:min(len(m.recs), 1)]
	m.used, m.freeRec = 0, 0
	if len(m.idx) > minIndex {
		m.idx, m.tags = nil, nil
	}
	if len(m.owners) > 1024 {
		m.owners = nil
	}
}

func (m *Memory) Push(j *Job, owner Owner, tag uint8, data bool) Ref {
	if j.Seq == 0 {
		m.seq++
		j.Seq = m.seq
	}
	r := m.newRec()
	x := m.rec(r)
	*x = rec{seq: j.Seq, submitted: j.Submitted, prio: j.Priority, retries: j.Retries, attempts: j.Attempts,
		owner: owner, tag: tag, class: noData}
	if j.NumID {
		x.flags |= flagNum
	}
	// the type's heap
	t, ok := m.typeIdx[j.Type]
	if !ok {
		t = uint32(len(m.types))
		m.types = append(m.types, typeQueue{name: j.Type})
		m.typeIdx[j.Type] = t
	}
	x.typ = t
	q := &m.types[t]
	x.pos = int32(len(q.heap))
	q.heap = append(q.heap, r)
	m.up(q.heap, len(q.heap)-1)
	// the owner's list
	if owner != 0 {
		if int(owner) >= len(m.owners) {
			m.owners = append(m.owners, make([]ownerList, int(owner)+1-len(m.owners))...)
		}
		o := &m.owners[owner]
		if o.head != 0 {
			m.rec(o.head).oprev = r
			x.onext = o.head
		}
		o.head = r
		o.n++
	}
	m.n++
	j.Ref = r
	if data {
		m.Keep(j)
	}
	return r
}

// Keep adds the id and arg of j to its record pushed without them: from now
// on the store keeps it alone.
func (m *Memory) Keep(j *Job) {
	r := j.Ref
	x := m.rec(r)
	if x.class != noData {
		return
	}
	x.idLen, x.argLen = uint32(len(j.ID)), uint32(len(j.Arg))
	b := m.allocBlob(r, x, len(j.ID)+len(j.Arg))
	copy(b[copy(b, j.ID):], j.Arg)
	m.index(r, j.ID)
}

func (m *Memory) Peek(typ string) Ref {
	t, ok := m.typeIdx[typ]
	if !ok || len(m.types[t].heap) == 0 {
		return 0
	}
	return m.types[t].heap[0]
}

func (m *Memory) Before(a, b Ref) bool {
	x, y := m.rec(a), m.rec(b)
	if x.prio != y.prio {
		return x.prio > y.prio
	}
	return x.seq < y.seq
}

func (m *Memory) Remove(r Ref) Owner {
	x := m.rec(r)
	// the type's heap
	q := &m.types[x.typ]
	i, last := int(x.pos), len(q.heap)-1
	if i != last {
		q.heap[i] = q.heap[last]
		m.rec(q.heap[i]).pos = int32(i)
	}
	q.heap[last] = 0
	q.heap = q.heap[:last]
	if i != last {
		if !m.down(q.heap, i) {
			m.up(q.heap, i)
		}
	}
	// the owner's list
	owner := x.owner
	if owner != 0 {
		o := &m.owners[owner]
		if x.oprev != 0 {
			m.rec(x.oprev).onext = x.onext
		} else {
			o.head = x.onext
		}
		if x.onext != 0 {
			m.rec(x.onext).oprev = x.oprev
		}
		o.n--
	}
	// the id and the data
	if x.class != noData {
		m.unindex(r)
		m.freeBlob(r, x)
	}
	*x = rec{onext: m.freeRec, pos: -1}
	m.freeRec = r
	m.n--
	if m.n == 0 {
		m.reset()
	}
	return owner
}

func (m *Memory) Load(r Ref, j *Job) (Owner, uint8) {
	x := m.rec(r)
	b := m.data(r, x)
	*j = Job{ID: string(b[:x.idLen]), Type: m.types[x.typ].name, Arg: append([]byte(nil), b[x.idLen:]...),
		Seq: x.seq, Priority: x.prio, Retries: x.retries, Attempts: x.attempts, Ref: r,
		NumID: x.flags&flagNum != 0, Submitted: x.submitted}
	return x.owner, x.tag
}

func (m *Memory) Submitted(r Ref) int64 { return m.rec(r).submitted }

func (m *Memory) Len(typ string) int {
	if t, ok := m.typeIdx[typ]; ok {
		return len(m.types[t].heap)
	}
	return 0
}

func (m *Memory) Total() int { return m.n }

func (m *Memory) Types() []string {
	out := make([]string, 0, len(m.types))
	for i := range m.types {
		q := &m.types[i]
		if len(q.heap) > 0 {
			out = append(out, q.name)
		} else if cap(q.heap) > 1024 {
			q.heap = nil // give a drained big queue's memory back
		}
	}
	return out
}

func (m *Memory) Each(typ string, f func(Ref)) {
	for i := range m.types {
		if q := &m.types[i]; typ == "" || q.name == typ {
			for _, r := range q.heap {
				f(r)
			}
		}
	}
}

func (m *Memory) OwnerFirst(o Owner) Ref {
	if int(o) < len(m.owners) {
		return m.owners[o].head
	}
	return 0
}

func (m *Memory) OwnerLen(o Owner) int {
	if int(o) < len(m.owners) {
		return int(m.owners[o].n)
	}
	return 0
}

// ---- the heaps ----

func (m *Memory) up(h []Ref, i int) {
	r := h[i]
	for i > 0 {
		p := (i - 1) / 2
		if !m.Before(r, h[p]) {
			break
		}
		h[i] = h[p]
		m.rec(h[i]).pos = int32(i)
		i = p
	}
	h[i] = r
	m.rec(r).pos = int32(i)
}

// down sifts h[i0] down; it reports whether it moved.
func (m *Memory) down(h []Ref, i0 int) bool {
	r, i, n := h[i0], i0, len(h)
	for {
		c := 2*i + 1
		if c >= n || c < 0 {
			break
		}
		if c2 := c + 1; c2 < n && m.Before(h[c2], h[c]) {
			c = c2
		}
		if !m.Before(h[c], r) {
			break
		}
		h[i] = h[c]
		m.rec(h[i]).pos = int32(i)
		i = c
	}
	h[i] = r
	m.rec(r).pos = int32(i)
	return i > i0
}

// ---- the blobs: size classes of pointer-free blocks ----

const maxBlob = 4096

// classSizes: every 8 bytes to 64, then four steps per doubling.
var classSizes = [...]uint32{8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256,
	320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096}

// sizeClass[(n+7)/8] is the smallest class that holds n bytes.
var sizeClass = func() (t [maxBlob/8 + 1]uint8) {
	c := 0
	for i := range t {
		for classSizes[c] < uint32(i*8) {
			c++
		}
		t[i] = uint8(c)
	}
	return t
}()

type blobClass struct {
	chunks [][]byte
	used   uint32 // blocks ever handed out (bump), since the last reset
	free   uint32 // free blocks (index+1), linked through their first 4 bytes
	live   uint32
}

func (m *Memory) allocBlob(r Ref, x *rec, n int) []byte {
	if n > maxBlob {
		if m.big == nil {
			m.big = map[Ref][]byte{}
		}
		b := make([]byte, n)
		m.big[r] = b
		x.class = bigData
		return b
	}
	c := sizeClass[(n+7)/8]
	bc, size := &m.blobs[c], classSizes[c]
	per := blobChunk / size
	var i uint32
	if bc.free != 0 {
		i = bc.free - 1
		bc.free = binary.LittleEndian.Uint32(bc.block(i, size, per))
	} else {
		if bc.used%per == 0 && int(bc.used/per) == len(bc.chunks) {
			bc.chunks = append(bc.chunks, make([]byte, per*size))
		}
		i = bc.used
		bc.used++
	}
	bc.live++
	x.class, x.blob = c, i
	return bc.block(i, size, per)[:n]
}

func (bc *blobClass) block(i, size, per uint32) []byte {
	off := (i % per) * size
	return bc.chunks[i/per][off : off+size : off+size]
}

func (m *Memory) data(r Ref, x *rec) []byte {
	switch x.class {
	case noData:
		return nil
	case bigData:
		return m.big[r]
	}
	size := classSizes[x.class]
	return m.blobs[x.class].block(x.blob, size, blobChunk/size)[:x.idLen+x.argLen]
}

func (m *Memory) freeBlob(r Ref, x *rec) {
	if x.class == bigData {
		delete(m.big, r)
		return
	}
	bc, size := &m.blobs[x.class], classSizes[x.class]
	bc.live--
	if bc.live == 0 { // drained: keep the first chunk only
		clear(bc.chunks[min(len(bc.chunks), 1):])
		bc.chunks = bc.chunks[:min(len(bc.chunks), 1)]
		bc.used, bc.free = 0, 0
		return
	}
	binary.LittleEndian.PutUint32(bc.block(x.blob, size, blobChunk/size), bc.free)
	bc.free = x.blob + 1
}

// ---- the id index ----

func (m *Memory) id(r Ref) []byte {
	x := m.rec(r)
	return m.data(r, x)[:x.idLen]
}

func (m *Memory) Find(id string) Ref {
	if m.idxN == 0 {
		return 0
	}
	h := maphash.String(m.hash, id)
	mask := uint64(len(m.idx) - 1)
	tag := uint8(h >> 56)
	for i := h & mask; m.idx[i] != 0; i = (i + 1) & mask {
		if m.tags[i] == tag && string(m.id(m.idx[i])) == id {
			return m.idx[i]
		}
	}
	return 0
}

func (m *Memory) index(r Ref, id string) {
	if (m.idxN+1)*4 > len(m.idx)*3 {
		m.growIndex()
	}
	m.insert(r, maphash.String(m.hash, id))
	m.idxN++
}

func (m *Memory) insert(r Ref, h uint64) {
	mask := uint64(len(m.idx) - 1)
	i := h & mask
	for m.idx[i] != 0 {
		i = (i + 1) & mask
	}
	m.idx[i], m.tags[i] = r, uint8(h>>56)
}

func (m *Memory) growIndex() {
	old := m.idx
	n := max(2*len(old), minIndex)
	m.idx, m.tags = make([]Ref, n), make([]uint8, n)
	for _, r := range old {
		if r != 0 {
			m.insert(r, maphash.Bytes(m.hash, m.id(r)))
		}
	}
}

// unindex takes r out of the id index (backward-shift deletion: no
// tombstones).
func (m *Memory) unindex(r Ref) {
	h := maphash.Bytes(m.hash, m.id(r))
	mask := uint64(len(m.idx) - 1)
	i := h & mask
	for m.idx[i] != r {
		i = (i + 1) & mask
	}
	for j := i; ; {
		j = (j + 1) & mask
		e := m.idx[j]
		if e == 0 {
			break
		}
		home := maphash.Bytes(m.hash, m.id(e)) & mask
		// e may move to i unless its home lies cyclically in (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			m.idx[i], m.tags[i] = e, m.tags[j]
			i = j
		}
	}
	m.idx[i], m.tags[i] = 0, 0
	m.idxN--
}
