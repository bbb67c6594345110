package jsctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
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
