package jsctl

import (
	"bytes"
	"encoding/json"
	"fmt"
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
