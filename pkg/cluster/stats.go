package cluster

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// typeMetaKey is the job stream's metadata key that names its type (the
// stream's name holds only its token).
const typeMetaKey = "js-type"

// QueueStat is one job type's queue cluster-wide.
type QueueStat struct {
	Type    string
	Queued  int // waiting for a worker
	Running int // handed to a worker, not yet acked
}

// QueueStats counts every type's queued and running jobs across the
// cluster: one stream listing, then one consumer listing per type.
func (c *Cluster) QueueStats(ctx context.Context) ([]QueueStat, error) {
	l := c.js.ListStreams(ctx, jetstream.WithStreamListSubject("jobs.>"))
	var out []QueueStat
	for info := range l.Info() {
		typ := info.Config.Metadata[typeMetaKey]
		if typ == "" || !strings.HasPrefix(info.Config.Name, jobStreamPre) {
			continue
		}
		qs := QueueStat{Type: typ}
		st, err := c.js.Stream(ctx, info.Config.Name)
		if err != nil {
			return out, err
		}
		cl := st.ListConsumers(ctx)
		for ci := range cl.Info() {
			qs.Running += ci.NumAckPending
		}
		if err := cl.Err(); err != nil {
			return out, err
		}
		qs.Queued = max(int(info.State.Msgs)-qs.Running, 0)
		out = append(out, qs)
	}
	if err := l.Err(); err != nil {
		return out, err
	}
	slices.SortFunc(out, func(a, b QueueStat) int { return strings.Compare(a.Type, b.Type) })
	return out, nil
}

// Peer is what one jsd announces about itself to the others.
type Peer struct {
	Name       string         `json:"name"`
	Version    string         `json:"version,omitempty"`
	Slots      int            `json:"slots"`
	SlotsInUse int            `json:"slots_in_use"`
	Workers    map[string]int `json:"workers,omitempty"`  // type -> workers serving it
	Capacity   map[string]int `json:"capacity,omitempty"` // type -> jobs those workers take at once
	Since      time.Time      `json:"since"`
	Seen       time.Time      `json:"seen"` // when it last announced itself
}

// PeerTTL is how long an announcement lasts: a jsd that stops announcing
// drops out of Peers after it.
const PeerTTL = 30 * time.Second

// Announce publishes p (under this jsd's Name) for Peers on every jsd.
// jsd calls it every few seconds.
func (c *Cluster) Announce(ctx context.Context, p Peer) error {
	p.Name = c.cfg.Name
	p.Seen = time.Now().UTC().Truncate(time.Millisecond)
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	_, err = c.peers.Put(ctx, token(c.cfg.Name), b)
	return err
}

// Peers lists the jsds that announced themselves within PeerTTL, by name.
// It reads what a watch of the peers bucket keeps here: no request per
// call, and one message per announcement however many jsds ask.
func (c *Cluster) Peers(ctx context.Context) ([]Peer, error) {
	cut := time.Now().Add(-PeerTTL)
	c.peerMu.Lock()
	out := make([]Peer, 0, len(c.peerSeen))
	for _, p := range c.peerSeen {
		if p.Seen.After(cut) { // an expired announcement leaves no marker
			out = append(out, p)
		}
	}
	c.peerMu.Unlock()
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	return out, ctx.Err()
}

// peersLoop keeps peerSeen up to date from a watch of the peers bucket,
// watching again after a failure.
func (c *Cluster) peersLoop(ctx context.Context) {
	defer close(c.peersDone)
	wait := 20 * time.Millisecond
	for ctx.Err() == nil {
		w, err := c.peers.WatchAll(ctx)
		if err == nil {
			for e := range w.Updates() {
				if e == nil {
					continue // the current values have been sent
				}
				var p Peer
				c.peerMu.Lock()
				if e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &p) == nil {
					c.peerSeen[e.Key()] = p
				} else {
					delete(c.peerSeen, e.Key())
				}
				c.peerMu.Unlock()
			}
			_ = w.Stop()
		} else if ctx.Err() == nil {
			c.logf("cluster: watch the peers: %v", err)
		}
		_ = pause(ctx, &wait)
	}
}

// JobStatus is a live job as the cluster knows it.
type JobStatus struct {
	Job      Job
	State    string // "queued", "running" or "ended" (its outcome waits: WaitResult fetches it)
	Attempts int
	Host     string // the jsd running it
	Started  int64
}

// Status reads job id's record (through the leader). ErrNotFound: no live
// job and no kept outcome under that id.
func (c *Cluster) Status(ctx context.Context, id string) (JobStatus, error) {
	r, _, err := c.get(ctx, token(id))
	if err != nil {
		return JobStatus{}, err
	}
	if r == nil {
		if c.hasResult(ctx, id) {
			return JobStatus{Job: Job{ID: id}, State: stEnded}, nil
		}
		return JobStatus{}, ErrNotFound
	}
	return JobStatus{Job: r.job(), State: r.State, Attempts: r.Attempts, Host: r.Host, Started: r.Started}, nil
}
