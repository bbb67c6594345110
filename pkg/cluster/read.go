package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// storedMsg is a message read from a stream's leader.
type storedMsg struct {
	Subject string `json:"subject"`
	Seq     uint64 `json:"seq"`
	Hdrs    []byte `json:"hdrs,omitempty"`
	Data    []byte `json:"data,omitempty"`
}

// deleted reports whether m is a KV delete or purge marker, or a marker the
// server left when a TTL removed the key.
func (m *storedMsg) deleted() bool {
	if len(m.Hdrs) == 0 {
		return false
	}
	h, err := nats.DecodeHeadersMsg(m.Hdrs)
	if err != nil {
		return false
	}
	return h.Get("KV-Operation") != "" || h.Get(jetstream.MarkerReasonHeader) != ""
}

// leaderGet reads one message through the stream's leader (STREAM.MSG.GET),
// never through a direct get: the KV API reads with direct gets, which any
// replica answers, so in R3 a read right after a write may see the value
// before it, and the fences must not decide on such a read. nil: no such
// message.
func (c *Cluster) leaderGet(ctx context.Context, stream string, seq uint64, lastFor string) (*storedMsg, error) {
	req := struct {
		Seq     uint64 `json:"seq,omitempty"`
		LastFor string `json:"last_by_subj,omitempty"`
	}{seq, lastFor}
	b, _ := json.Marshal(req)
	var resp *nats.Msg
	var err error
	for try := 0; ; try++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		resp, err = c.nc.RequestWithContext(actx, "$JS.API.STREAM.MSG.GET."+stream, b)
		cancel()
		if err == nil || ctx.Err() != nil || !notReady(err) || try == 10 {
			break
		}
		t := time.NewTimer(time.Duration(min(20<<try, 500)) * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	if err != nil {
		return nil, err
	}
	var r struct {
		Error   *jetstream.APIError `json:"error,omitempty"`
		Message *storedMsg          `json:"message,omitempty"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return nil, fmt.Errorf("cluster: get from %s: %w", stream, err)
	}
	if r.Error != nil {
		if r.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound || r.Error.Code == 404 && r.Error.ErrorCode != jetstream.JSErrCodeStreamNotFound {
			return nil, nil
		}
		return nil, r.Error
	}
	if r.Message == nil {
		return nil, fmt.Errorf("cluster: get from %s: empty answer", stream)
	}
	return r.Message, nil
}

// kvGet reads a key's latest value through its bucket's leader: nil when
// the key has no value (never set, deleted, purged or expired).
func (c *Cluster) kvGet(ctx context.Context, bucket, key string) (*storedMsg, error) {
	m, err := c.leaderGet(ctx, "KV_"+bucket, 0, "$KV."+bucket+"."+key)
	if err != nil || m == nil || m.deleted() {
		return nil, err
	}
	return m, nil
}
