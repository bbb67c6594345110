// Package metrics is what jsd counts: the counters (deputy's names plus
// ours) and latency histograms, their JSON form ({"cmd":"metrics"}, jsctl
// metrics --json) and their Prometheus text form (GET /metrics, jsctl
// metrics --prometheus).
package metrics

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"time"
)

// Counters are the flat counters. deputy's names come first: up_since,
// connections, workers_added, jobs_added, jobs_dispatched, jobs_done,
// jobs_reassigned (always all of them, not only after a first increment).
type Counters struct {
	UpSince         int64  `json:"up_since"` // ms since the epoch
	Connections     uint64 `json:"connections"`
	WorkersAdded    int64  `json:"workers_added"`
	JobsAdded       int64  `json:"jobs_added"`
	JobsDispatched  int64  `json:"jobs_dispatched"`
	JobsDone        int64  `json:"jobs_done"`
	JobsReassigned  int64  `json:"jobs_reassigned"`
	JobsFailed      int64  `json:"jobs_failed"`
	JobsCancelled   int64  `json:"jobs_cancelled"`
	JobsLost        int64  `json:"jobs_lost"`
	ResultsExpired  int64  `json:"results_expired"`
	LeasesGranted   uint64 `json:"leases_granted"`
	TokensReclaimed int    `json:"tokens_reclaimed"`
	ProtocolErrors  uint64 `json:"protocol_errors"`
	// ConnectionsRefused counts connections refused at jsd's open-file limit.
	ConnectionsRefused uint64 `json:"connections_refused"`
	// Gauges.
	ConnectionsOpen int `json:"connections_open"`
	JobsQueued      int `json:"jobs_queued"`
	JobsRunning     int `json:"jobs_running"`
	Workers         int `json:"workers"`
	SlotsTotal      int `json:"slots_total"`
	SlotsInUse      int `json:"slots_in_use"`
}

// Snapshot is the whole metrics document.
type Snapshot struct {
	Counters
	// Histograms by name, then by job type ("" for the slot pool).
	Histograms map[string]map[string]*Histogram `json:"histograms"`
}

// Histogram names.
const (
	SlotWait     = "slot_wait_seconds"      // acquire to lease
	JobQueueWait = "job_queue_wait_seconds" // submitted to handed to a worker
	JobRun       = "job_run_seconds"        // handed to a worker to its answer
)

// Bounds are the histogram buckets' upper bounds in seconds.
var Bounds = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800}

// Histogram counts observations per bucket (not cumulative; the last
// count is above every bound).
type Histogram struct {
	Counts []uint64 `json:"counts"`
	Sum    float64  `json:"sum"`
	Count  uint64   `json:"count"`
}

// Observe adds one duration.
func (h *Histogram) Observe(d time.Duration) {
	if h.Counts == nil {
		h.Counts = make([]uint64, len(Bounds)+1)
	}
	s := d.Seconds()
	i := sort.SearchFloat64s(Bounds, s)
	h.Counts[i]++
	h.Sum += s
	h.Count++
}

// Clone copies h (for a snapshot).
func (h *Histogram) Clone() *Histogram {
	c := *h
	c.Counts = append([]uint64(nil), h.Counts...)
	return &c
}

// Set is histograms by name and type, owned by one goroutine.
type Set map[string]map[string]*Histogram

// Observe adds d to the histogram name/typ.
func (s Set) Observe(name, typ string, d time.Duration) {
	m := s[name]
	if m == nil {
		m = map[string]*Histogram{}
		s[name] = m
	}
	h := m[typ]
	if h == nil {
		h = &Histogram{}
		m[typ] = h
	}
	h.Observe(d)
}

// Clone copies the set.
func (s Set) Clone() map[string]map[string]*Histogram {
	out := make(map[string]map[string]*Histogram, len(s))
	for name, m := range s {
		c := make(map[string]*Histogram, len(m))
		for t, h := range m {
			c[t] = h.Clone()
		}
		out[name] = c
	}
	return out
}

// gauges are the Counters fields that are gauges, not counters.
var gauges = map[string]bool{"connections_open": true, "jobs_queued": true, "jobs_running": true, "workers": true, "slots_total": true, "slots_in_use": true}

// Prometheus writes the snapshot in the Prometheus text format: counters as
// js_<name>_total, gauges as js_<name>, up_since as js_up_since_seconds,
// histograms as js_<name>{type="..."} with cumulative buckets.
func Prometheus(w io.Writer, s *Snapshot, counters map[string]float64) {
	for _, k := range slices.Sorted(maps.Keys(counters)) {
		v := counters[k]
		switch {
		case k == "up_since":
			fmt.Fprintf(w, "# TYPE js_up_since_seconds gauge\njs_up_since_seconds %s\n", num(v/1000))
		case gauges[k]:
			fmt.Fprintf(w, "# TYPE js_%s gauge\njs_%s %s\n", k, k, num(v))
		default:
			fmt.Fprintf(w, "# TYPE js_%s_total counter\njs_%s_total %s\n", k, k, num(v))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Histograms)) {
		fmt.Fprintf(w, "# TYPE js_%s histogram\n", name)
		byType := s.Histograms[name]
		for _, typ := range slices.Sorted(maps.Keys(byType)) {
			h := byType[typ]
			label := ""
			if typ != "" {
				label = `type="` + escape(typ) + `",`
			}
			var cum uint64
			for i, b := range Bounds {
				if i < len(h.Counts) {
					cum += h.Counts[i]
				}
				fmt.Fprintf(w, "js_%s_bucket{%sle=\"%s\"} %d\n", name, label, num(b), cum)
			}
			fmt.Fprintf(w, "js_%s_bucket{%sle=\"+Inf\"} %d\n", name, label, h.Count)
			l := ""
			if typ != "" {
				l = `{type="` + escape(typ) + `"}`
			}
			fmt.Fprintf(w, "js_%s_sum%s %s\njs_%s_count%s %d\n", name, l, num(h.Sum), name, l, h.Count)
		}
	}
}

func num(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func escape(s string) string {
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// Decode reads a metrics document: the snapshot, and its flat counters by
// name (for Prometheus, which lists every counter by its JSON name).
func Decode(raw []byte) (*Snapshot, map[string]float64, error) {
	var s Snapshot
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, nil, err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(raw, &all); err != nil {
		return nil, nil, err
	}
	counters := map[string]float64{}
	for k, v := range all {
		var f float64
		if json.Unmarshal(v, &f) == nil {
			counters[k] = f
		}
	}
	return &s, counters, nil
}
