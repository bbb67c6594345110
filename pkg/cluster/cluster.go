package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// MinServerVersion is the oldest nats-server Connect accepts: per-message
// TTLs (the per-key TTL of live ids, Nats-TTL) and subject delete markers
// came in 2.11. An older server (Debian's 2.9.10) would silently ignore
// those fields and keep ids forever, so Connect refuses it.
const MinServerVersion = "2.11.0"

// Names in JetStream. They are fixed: every jsd of a cluster must agree.
const (
	idsBucket      = "JS_IDS"        // live ids, and ended detached jobs until fetched
	resultsBucket  = "JS_RESULTS"    // outcomes nobody answered for, by origin
	peersBucket    = "JS_PEERS"      // what each jsd announces (TTL PeerTTL)
	advisoryStream = "JS_ADVISORIES" // MAX_DELIVERIES advisories, captured
	lostConsumer   = "lost"
	jobStreamPre   = "JS_JOBS_" // + type token: one work-queue stream per type

	advisorySubjects = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>"
	resultSubjectPre = "js.res."  // + origin token: outcomes, request/reply
	cancelSubjectPre = "js.ctl."  // + jsd name token: cancel signals
	wakeSubjectPre   = "js.wake." // + type token: "a job of this type was queued"
	wakeQueueGroup   = "fetch"
)

// Config says where the cluster is and how this jsd takes part. The zero
// values of the durations and limits are replaced by the defaults below,
// chosen on purpose (JetStream's own defaults stall or lose work here).
type Config struct {
	// URLs of NATS servers; an entry may hold several, comma-separated.
	URLs []string
	// Token for NATS's token auth ("" for none).
	Token string
	// Name of this jsd in the cluster: the origin of the jobs it submits
	// (where their outcomes are routed) and the host its workers run jobs
	// on (where cancels are signalled). Unique per jsd. Default: the host
	// name.
	Name string
	// Replicas of every stream and bucket; 0: from the cluster size (1
	// unclustered, else min(3, servers known)).
	Replicas int
	// AckWait: how long a fetched job may go without an outcome, Nak or
	// InProgress before JetStream hands it out again (covers a dead jsd;
	// jsd sends InProgress for long jobs). Default 30 s.
	AckWait time.Duration
	// MaxAckPending: jobs of one type and level that may run at once,
	// cluster-wide. JetStream's default of 1000 silently stalls a busy
	// queue; default 1<<20.
	MaxAckPending int
	// MaxDeliver caps the deliveries of any job (its consumer's MaxDeliver;
	// a job's own Retries lower it). "Unbounded" retries end here. Default 100.
	MaxDeliver int
	// DuplicateWindow: how long a job stream remembers message ids, within
	// which a re-sent publish is dropped. Default 1 min.
	DuplicateWindow time.Duration
	// IDTTL: how long a live id is kept if no jsd ever ends its job (every
	// state change renews it). Default 7 days.
	IDTTL time.Duration
	// ReserveTTL: how long a submitted job's id is reserved until its
	// message is in its stream (Submit gives up after half of it); the
	// reservation of a jsd that died in between expires then. Default 30 s.
	ReserveTTL time.Duration
	// ResultTTL: how long an ended job's outcome waits to be fetched
	// (detached results, and outcomes whose origin did not answer). Default 1 h.
	ResultTTL time.Duration
	// RouteTimeout: how long an outcome waits for its origin's answer
	// before it goes to the results bucket. Default 2 s.
	RouteTimeout time.Duration
	// PollInterval: how often a waiting Fetch looks again when no wake-up
	// came (wake-ups are core messages: at most once). Default 1 s.
	PollInterval time.Duration
	// OnResult receives the outcomes of jobs whose Origin is Name. It
	// returns false for a job it does not know (it then goes to the results
	// bucket). nil: every outcome for Name goes to the bucket. Called from
	// NATS's goroutine: it must not block.
	OnResult func(Result) bool
	// OnCancel receives the cancels of jobs running on this jsd's workers.
	// Called from NATS's goroutine: it must not block.
	OnCancel func(CancelSignal)
	// Logf logs what the cluster repairs or cannot do; nil: silent.
	Logf func(format string, args ...any)
	// Options are extra NATS connection options (TLS, credentials...).
	Options []nats.Option
}

func (c *Config) defaults() error {
	if c.Name == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return fmt.Errorf("cluster: no Name and no host name: %v", err)
		}
		c.Name = h
	}
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&c.AckWait, 30*time.Second)
	set(&c.DuplicateWindow, time.Minute)
	set(&c.IDTTL, 7*24*time.Hour)
	set(&c.ResultTTL, time.Hour)
	set(&c.ReserveTTL, 30*time.Second)
	set(&c.RouteTimeout, 2*time.Second)
	set(&c.PollInterval, time.Second)
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = 1 << 20
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 100
	}
	if c.IDTTL < time.Second || c.ResultTTL < time.Second {
		return errors.New("cluster: IDTTL and ResultTTL must be at least 1 s (JetStream's smallest message TTL)")
	}
	if len(c.URLs) == 0 {
		return errors.New("cluster: no NATS URL")
	}
	return nil
}

// Cluster is one jsd's handle on the shared queues. Its methods are safe for
// concurrent use.
type Cluster struct {
	cfg      Config
	nc       *nats.Conn
	js       jetstream.JetStream
	ids      jetstream.KeyValue
	results  jetstream.KeyValue
	peers    jetstream.KeyValue
	replicas int
	nameTok  string
	version  string

	// watching, when set (tests), is called once WaitResult's watch of
	// id has shown it not ended yet: the wait now waits for the change.
	watching func(id string)

	mu      sync.Mutex
	types   map[string]*typeQueue // by type name
	streams map[string]jetstream.Stream
	rr      uint32 // rotates the order of types in Fetch

	subs        []*nats.Subscription
	stop        context.CancelFunc
	lostDone    chan struct{}
	keptDone    chan struct{}
	peersDone   chan struct{}
	peerMu      sync.Mutex
	peerSeen    map[string]Peer // by key, as the watch of JS_PEERS last saw them
	reconnected chan struct{}   // signalled by each reconnect to NATS
}

// VersionError is Connect's refusal of a server older than MinServerVersion.
type VersionError struct{ Server, Min string }

func (e *VersionError) Error() string {
	return fmt.Sprintf("cluster: nats-server %s is too old: js needs %s or newer (per-message TTLs; an older server "+
		"silently ignores them and would keep job ids forever)", e.Server, e.Min)
}

// Connect joins the cluster: connects, checks the server's version, waits
// for a JetStream leader (and, for replicated buckets, the peers), creates
// or updates the buckets and the advisory stream, and starts serving this
// jsd's result and cancel subjects and the lost-job watcher. ctx bounds the
// whole start (a cluster that never elects a leader fails here).
func Connect(ctx context.Context, cfg Config) (*Cluster, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	urls := strings.Join(cfg.URLs, ",")
	reconnected := make(chan struct{}, 1)
	opts := []nats.Option{nats.Name("jsd " + cfg.Name), nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond), nats.ReconnectHandler(func(*nats.Conn) {
			select {
			case reconnected <- struct{}{}:
			default:
			}
		})}
	if cfg.Token != "" {
		opts = append(opts, nats.Token(cfg.Token))
	}
	if logf := cfg.Logf; logf != nil {
		opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			if s != nil {
				logf("cluster: nats: %s: %v", s.Subject, err)
			} else {
				logf("cluster: nats: %v", err)
			}
		}))
	} else {
		opts = append(opts, nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	}
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 && d < nats.DefaultTimeout {
			opts = append(opts, nats.Timeout(d))
		}
	}
	opts = append(opts, cfg.Options...)
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to %s: %w", urls, err)
	}
	c := &Cluster{cfg: cfg, nc: nc, nameTok: token(cfg.Name), types: map[string]*typeQueue{},
		streams: map[string]jetstream.Stream{}, version: nc.ConnectedServerVersion(), reconnected: reconnected}
	if err := c.start(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	if !versionAtLeast(c.version, MinServerVersion) {
		return &VersionError{Server: c.version, Min: MinServerVersion}
	}
	if ok, _ := c.nc.ConnectedServerJetStream(); !ok {
		// The flag is not sent by every server: the API call below is the test.
		c.logf("cluster: server %s does not announce JetStream; trying its API", c.nc.ConnectedServerName())
	}
	js, err := jetstream.New(c.nc)
	if err != nil {
		return err
	}
	c.js = js
	// A JetStream leader: the API answers only once the meta group has one.
	if err := retry(ctx, "a JetStream leader", func(ctx context.Context) error {
		_, err := js.AccountInfo(ctx)
		return err
	}); err != nil {
		return err
	}
	c.replicas = c.cfg.Replicas
	if c.replicas <= 0 {
		c.replicas = c.clusterSize()
	}
	// The buckets. Creating an R3 bucket fails with "insufficient
	// resources" until the peers have joined: retried until ctx ends.
	if err := retry(ctx, fmt.Sprintf("%d JetStream peers for the id bucket", c.replicas), func(ctx context.Context) error {
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:         idsBucket,
			Description:    "js: live job ids (per-key TTL) and detached results until fetched",
			History:        1,
			Storage:        jetstream.FileStorage,
			Replicas:       c.replicas,
			LimitMarkerTTL: time.Minute,
		})
		if err != nil {
			return err
		}
		st, err := kv.Status(ctx)
		if err != nil {
			return err
		}
		if st.LimitMarkerTTL() == 0 {
			return permanent(fmt.Errorf("cluster: the server ignored per-key TTLs on bucket %s (nats-server %s)", idsBucket, c.version))
		}
		c.ids = kv
		return nil
	}); err != nil {
		return err
	}
	if err := retry(ctx, "the results bucket", func(ctx context.Context) error {
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      resultsBucket,
			Description: "js: outcomes whose origin jsd did not answer, by origin",
			History:     1,
			TTL:         c.cfg.ResultTTL,
			Storage:     jetstream.FileStorage,
			Replicas:    c.replicas,
		})
		c.results = kv
		return err
	}); err != nil {
		return err
	}
	if err := retry(ctx, "the peers bucket", func(ctx context.Context) error {
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      peersBucket,
			Description: "js: the jsds of the cluster, as each announces itself",
			History:     1,
			TTL:         PeerTTL,
			Storage:     jetstream.MemoryStorage,
			Replicas:    c.replicas,
		})
		c.peers = kv
		return err
	}); err != nil {
		return err
	}
	// MAX_DELIVERIES advisories are core messages (at most once, and only
	// while someone listens): a stream keeps them until a jsd handles them.
	var lost jetstream.Consumer
	if err := retry(ctx, "the advisory stream", func(ctx context.Context) error {
		s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:        advisoryStream,
			Description: "js: MAX_DELIVERIES advisories of the job streams, until a jsd reports the job lost",
			Subjects:    []string{advisorySubjects},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    c.replicas,
			MaxAge:      c.cfg.IDTTL,
			Duplicates:  c.cfg.DuplicateWindow,
		})
		if err != nil {
			return err
		}
		lost, err = s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable:       lostConsumer,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       c.cfg.AckWait,
			MaxAckPending: 1000,
		})
		return err
	}); err != nil {
		return err
	}
	// This jsd's subjects.
	if c.cfg.OnResult != nil {
		sub, err := c.nc.Subscribe(resultSubjectPre+c.nameTok, c.onResult)
		if err != nil {
			return err
		}
		c.subs = append(c.subs, sub)
	}
	if c.cfg.OnCancel != nil {
		sub, err := c.nc.Subscribe(cancelSubjectPre+c.nameTok, c.onCancel)
		if err != nil {
			return err
		}
		c.subs = append(c.subs, sub)
	}
	if err := c.nc.FlushWithContext(ctx); err != nil {
		return err
	}
	lctx, stop := context.WithCancel(context.Background())
	c.stop = stop
	c.lostDone = make(chan struct{})
	go c.lostLoop(lctx, lost)
	c.keptDone = make(chan struct{})
	go c.keptLoop(lctx)
	c.peerSeen = map[string]Peer{}
	c.peersDone = make(chan struct{})
	go c.peersLoop(lctx)
	return nil
}

// Close stops the watcher and this jsd's subjects and closes the
// connection. Deliveries not yet completed come back after AckWait.
func (c *Cluster) Close() {
	if c.stop != nil {
		c.stop()
		<-c.lostDone
		<-c.keptDone
		<-c.peersDone
	}
	for _, s := range c.subs {
		_ = s.Unsubscribe()
	}
	c.nc.Close()
}

// Name is this jsd's name in the cluster.
func (c *Cluster) Name() string { return c.cfg.Name }

// AckWait is how long a fetched job may go without an outcome, Nak or
// InProgress.
func (c *Cluster) AckWait() time.Duration { return c.cfg.AckWait }

// Replicas is the replica count of the streams and buckets this jsd creates.
func (c *Cluster) Replicas() int { return c.replicas }

// ServerVersion is the version of the NATS server this jsd is connected to.
func (c *Cluster) ServerVersion() string { return c.version }

func (c *Cluster) logf(format string, args ...any) {
	if c.cfg.Logf != nil {
		c.cfg.Logf(format, args...)
	}
}

// clusterSize is how many servers the connected one knows: 1 unclustered,
// else the servers of the connection's pool (the URLs given plus those the
// cluster advertised), at most 3.
func (c *Cluster) clusterSize() int {
	if c.nc.ConnectedClusterName() == "" {
		return 1
	}
	n := len(c.nc.Servers())
	return max(1, min(3, n))
}

// versionAtLeast compares dotted versions ("2.15.2", "2.11.0-RC.1").
func versionAtLeast(have, need string) bool {
	h, n := parseVersion(have), parseVersion(need)
	for i := range h {
		if h[i] != n[i] {
			return h[i] > n[i]
		}
	}
	return true
}

func parseVersion(v string) [3]int {
	var out [3]int
	v = strings.TrimPrefix(v, "v")
	if i := strings.IndexAny(v, "-+"); i >= 0 {
		v = v[:i]
	}
	for i, p := range strings.SplitN(v, ".", 3) {
		out[i], _ = strconv.Atoi(p)
	}
	return out
}

// permanentError marks an error retry must not retry.
type permanentError struct{ error }

func permanent(err error) error { return permanentError{err} }

// retry runs f until it succeeds, fails for good, or ctx ends. It retries
// only the answers that mean "not ready yet": no responders (no JetStream
// leader), a timed-out API call, JetStream temporarily unavailable, and
// "insufficient resources" / "no suitable peers" (fewer peers than replicas
// so far). Waits grow from 20 ms to 500 ms.
func retry(ctx context.Context, what string, f func(context.Context) error) error {
	wait := 20 * time.Millisecond
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f(cctx)
		cancel()
		if err == nil {
			return nil
		}
		var p permanentError
		if errors.As(err, &p) {
			return p.error
		}
		if !notReady(err) || ctx.Err() != nil {
			if last != nil && ctx.Err() != nil {
				err = fmt.Errorf("%w (last: %v)", err, last)
			}
			return fmt.Errorf("cluster: waiting for %s: %w", what, err)
		}
		last = err
		if err := pause(ctx, &wait); err != nil {
			return fmt.Errorf("cluster: waiting for %s: %w (last: %v)", what, err, last)
		}
	}
}

func notReady(err error) bool {
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoHeartbeat) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) { // a stream without a leader for now
		return true
	}
	var api *jetstream.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode {
		case 10008, // JetStream system temporarily unavailable (no leader)
			10023, // insufficient resources (peers not yet joined)
			10005: // no suitable peers for placement
			return true
		}
		return api.Code == 503
	}
	return false
}

// pause is the back-off of the retry loops: it sleeps *wait (or until ctx
// ends: its error), then doubles *wait up to 500 ms.
func pause(ctx context.Context, wait *time.Duration) error {
	t := time.NewTimer(*wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	*wait = min(2**wait, 500*time.Millisecond)
	return nil
}
