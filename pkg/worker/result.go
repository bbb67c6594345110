package worker

import (
	"encoding/base64"
	"encoding/json"
	"unicode/utf8"
)

// resultOf turns a handler's stdout into a job result: the bytes as a JSON
// string, or their base64 (enc "base64") when they are not UTF-8.
func resultOf(b []byte) (json.RawMessage, string) {
	if utf8.Valid(b) {
		r, _ := json.Marshal(string(b))
		return r, ""
	}
	r, _ := json.Marshal(base64.StdEncoding.EncodeToString(b))
	return r, "base64"
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
