// Package cluster moves jsd's typed job queues into NATS JetStream, so that
// jsd instances on many hosts share them: a job submitted on any host runs on
// a worker connected to any host. Each jsd keeps its own slot pool, its local
// workers and its submitters' connections; this package is the shared part.
// It does not know jsd: jsd calls Submit for its submitters, Fetch for its
// idle workers, Complete/Nak/InProgress for what its workers do, Cancel and
// WaitResult for jsctl, and receives outcomes and cancels through
// Config.OnResult and Config.OnCancel.
//
// # What lives where
//
//   - One work-queue stream per job type, JS_JOBS_<type>, with one subject
//     per priority level, jobs.<type>.p0 .. p9 (Levels), and one durable
//     pull consumer per level (p0 .. p9) on disjoint filters, shared by all
//     jsds. A message is the job's id and submission nonce, then its arg.
//     A message leaves the stream when it is acked (work-queue retention).
//   - The ids bucket (KV JS_IDS): one record per live job, keyed by its id:
//     type, priority, retries, origin, state (queued, running, ended),
//     attempts, the jsd running it, and once ended its outcome. Every change
//     is a compare-and-set on the key's revision, with a per-message TTL
//     (IDTTL while live, ResultTTL once ended), so the record is the one
//     place where anything about a job is decided.
//   - The results bucket (KV JS_RESULTS, TTL ResultTTL): outcomes whose
//     origin jsd did not answer, under <origin>.<id>.
//   - The advisory stream JS_ADVISORIES: the MAX_DELIVERIES advisories of
//     the job consumers, kept until a jsd has reported the job lost.
//   - Core subjects: js.res.<origin> (outcomes, request/reply),
//     js.ctl.<jsd> (cancel signals), js.wake.<type> (a job was queued; a
//     queue group).
//
// Names that are not [A-Za-z0-9_-] (or start with '_') become "_" + their
// base64url in subjects, stream names and keys.
//
// # The life of a job
//
//  1. Submit creates the id's record (KV Create: it fails if the key exists,
//     so live ids are unique cluster-wide; a detached job's id stays taken
//     until its result is fetched) as a reservation that expires after
//     ReserveTTL, publishes the message to jobs.<type>.p<Level(priority)>
//     with Nats-Msg-Id = the nonce (a re-sent publish is dropped within
//     DuplicateWindow), records the message's stream sequence (the record
//     now lives IDTTL), and publishes a wake-up. A jsd that dies before its
//     message is in the stream leaves only a reservation, which expires:
//     the id is free again and a wait for it ends with not found. Submit
//     gives up after ReserveTTL/2 (the job is then not queued).
//  2. Fetch takes messages highest level first (one stream info per type
//     says which levels hold messages; FetchNoWait on those, p9 down to p0),
//     FIFO within a level: the stream sequence is arrival order at the
//     stream's leader, whichever host submitted. Each message is claimed: its
//     record goes to running with attempts+1 and this jsd as host; the
//     revision of that write is the attempt's Fence. A message whose record
//     is gone, belongs to another submission (nonce) or says ended is removed
//     instead; a job redelivered after its last allowed attempt (its jsd
//     died: AckWait) ends as lost there. With nothing queued, Fetch waits for
//     a wake-up (delivered to one jsd of the queue group, which passes it to
//     one of its waiting Fetches or on to another jsd, at most 3 hops) or
//     PollInterval.
//  3. The worker answers: Complete writes the outcome into the record if
//     the record is still at the Fence (else ErrStale: a newer attempt or a
//     cancel owns the job, and the message is left alone, since JetStream
//     matches acks by stream sequence only), routes it to the origin (core
//     request to js.res.<origin>; no answer "ok" within RouteTimeout: the
//     results bucket, where the origin finds it when it is back: after its
//     reconnect to NATS, or within KeptInterval), frees the id, and acks the
//     message (DoubleAck). A detached job's outcome stays in its record
//     until WaitResult fetches it: it goes to the one waiter whose purge of
//     the record (compare-and-set at the stream's leader) went through. Nak
//     (the worker went away) fences the record back to queued and Naks: the
//     job comes back at once, ahead of later ones; with its retries spent it
//     ends as lost instead. InProgress checks the fence, then resets AckWait.
//  4. A job whose deliveries reach the consumer's MaxDeliver stays in its
//     work-queue stream; the server's MAX_DELIVERIES advisory is captured in
//     JS_ADVISORIES and every jsd consumes it (one handles each): the record
//     is ended as lost (compare-and-set: once), the outcome routed, the
//     message deleted.
//  5. Cancel, from any jsd, ends the record as cancelled (compare-and-set),
//     sends the running jsd (if any) a CancelSignal on js.ctl.<host>, routes
//     the outcome, then deletes the message, queued or running. The worker's
//     late answer is refused as stale; the jsd also learns it from its next
//     InProgress (ErrStale) if the core-message signal was lost.
//
// A record left ended by a jsd that died before settling it, or whose
// outcome could be neither handed to its origin nor kept in the results
// bucket (NATS failing over: the message is then not acked), is settled by
// whoever meets the job next (its message's redelivery, or its advisory).
// The cost: its origin may get that outcome twice; Result.Nonce identifies
// the submission, and jsd drops an outcome for a job it no longer holds.
//
// # Retries
//
// JetStream's MaxDeliver is per consumer, a job's retries are per job. The
// consumers' MaxDeliver is Config.MaxDeliver (default 100: "unbounded"
// retries end there); a job's own limit, Retries+1 attempts, is enforced by
// this package from the attempts in its record: at Nak, and when a
// redelivery is claimed. So a job whose worker disconnects uses its retries
// exactly as in one jsd; the advisory catches the cap.
//
// # Consistency notes
//
// The fences read through the stream leader (STREAM.MSG.GET), never with
// the KV API's direct gets, which any replica may answer with a value older
// than the write just confirmed. A KV watch too may be served by a replica
// behind or ahead of the leader (it was seen to show a write 12 ms before
// the leader had applied it): WaitResult confirms at the leader. Every
// request to JetStream has its own deadline (4 s) and is sent again: one
// in flight on the connection to a node that dies is never answered; a
// write whose answer was lost is recognised at the leader (its value, the
// nonce, or the purge's tag). An ack confirmed by DoubleAck removes the
// message from a replicated stream a moment later (the consumer's and the
// stream's Raft groups apply it in turn). docs/scale.md lists where
// JetStream cannot give jsd's semantics exactly.
//
// # Versions
//
// Connect refuses servers older than MinServerVersion (2.11: per-message
// TTLs), and checks that the ids bucket really has them.
package cluster
