package jsctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

func (e *env) printJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	json.Indent(&out, b, "", "  ")
	fmt.Fprintln(e.stdio.Out, out.String())
	return nil
}

func (e *env) printJSONLine(v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintln(e.stdio.Out, string(b))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Prometheus renders jsd's counters in the Prometheus text format, each
// named js_<name> (up_since as js_up_since_seconds).
func Prometheus(m map[string]json.Number) string {
	var b strings.Builder
	for _, k := range sortedKeys(m) {
		v := m[k]
		name, kind := "js_"+k, "counter"
		switch {
		case k == "up_since":
			f, _ := v.Float64()
			fmt.Fprintf(&b, "# TYPE js_up_since_seconds gauge\njs_up_since_seconds %g\n", f/1000)
			continue
		case strings.HasSuffix(k, "_open") || k == "workers" || k == "jobs_queued" || k == "jobs_running":
			kind = "gauge"
		default:
			name += "_total"
		}
		fmt.Fprintf(&b, "# TYPE %s %s\n%s %s\n", name, kind, name, v)
	}
	return b.String()
}
