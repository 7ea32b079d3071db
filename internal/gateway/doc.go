// Package gateway fans one canvas's Redis stream out to WebSocket clients
// without losing an event, and serves the /ws endpoint.
//
// # Concurrency model
//
// Three kinds of goroutines, one lock that orders them:
//
//   - The consumer loop (Run → consume) is the only reader of the stream and
//     the only one that moves the hub's position to another epoch or past a
//     hole. (A relay in the same process may hand entries over before their
//     XADD, Offer; the hub takes them only where they continue its
//     position exactly, and the loop's read of them later adds nothing.)
//     It reads this instance's
//     consumer group stream.GroupName(InstanceID) (its own pending entries
//     "0" first, then new ones ">", BLOCK 500ms, COUNT ≤ 512), checks every entry's
//     (epoch, seq) against the position, fills gaps with XRANGE, hands
//     entries to the hub and only then XACKs them. A crash before the XACK
//     leaves the entries pending: the restarted instance (same id, same
//     consumer name) re-reads them first; entries stuck under another
//     consumer name are taken over with XAUTOCLAIM after ClaimIdle.
//   - The hub holds the clients and the position (epoch, last seq broadcast)
//     under one mutex. Broadcasting appends one shared batch of encoded
//     events to each client's bounded queue and never waits on a network:
//     a queue that would overflow is replaced by a "resync" frame (the
//     client is degraded). A client registers under the same mutex and is
//     told the position at that instant, so it receives exactly the entries
//     after it.
//   - Flushers (one per processor) write the queues: a broadcast marks each
//     client it queued to, and a flusher sends a marked client's whole
//     queue with one non-blocking write of WebSocket frames the gateway
//     builds itself (a batch is encoded once per wire format in use —
//     compact JSON, JSON with the fields= a client asked for, or
//     pixelflow.v1.bin — and, alone in a queue, framed once, the bytes
//     shared by every client of that format). So a delivery is one write system call
//     and no goroutine wake-up of its own. A client written less than
//     FlushWindow ago stays marked until its window ends and gets what
//     queued meanwhile as one frame; an idle client's event goes out at
//     once. A client whose socket takes only part of a write is handed to
//     its own writer goroutine, which finishes the frame with a deadline,
//     drains its queue with blocking writes and then hands the client back:
//     a slow client never holds a flusher. The writer goroutine also writes
//     the connection's opening and queues a ping every pingPeriod. Writers
//     take turns per frame on the socket (gorilla/websocket's own control
//     frames included), so no frame is ever cut by another. Beside them
//     runs a reader (the ServeHTTP goroutine, through gorilla/websocket)
//     that answers {"type":"ping"}, keeps the pong deadline and closes the
//     connection on anything else.
//
// A heartbeat goroutine (maintain) records liveness in a sorted set at the
// Redis server's clock, destroys the groups of instances silent for longer
// than GroupTTL (never its own) and measures lag.
//
// # Connection lifecycle
//
// Refusals happen before the upgrade (400 bad since, 403 origin, 503 full
// or closing). After it: register with the hub (position P), decide the
// resume (replay since+1..P with XRANGE, or resync), write hello and the
// replay or resync directly, start the writer goroutine, which drains the
// live entries queued meanwhile (all > P) and hands the connection to its
// flusher, then read until the connection ends.
// Close sends 1001 to every client and waits briefly for them.
//
// # Epochs and continuity
//
// The position's epoch comes from the epoch key (stream.Keys.Epoch) and
// from every entry.
// When the group or stream vanishes (NOGROUP: Redis lost its data or the
// relay started a new epoch, which deletes the stream and its groups), the
// consumer joins again: one script (stream.JoinGroup) reads the epoch and
// creates the group, after the hub's position if the epoch is still the
// hub's, else at the stream's start (a group left on another epoch's
// stream is set back there, never trusted), and in a new epoch every
// client is told to resync. Entries at or below the position are
// duplicates, counted and acknowledged but not broadcast; an entry above
// position+1 makes the consumer read the gap with XRANGE, and if the gap has
// been trimmed away, clients resync past it. Canary entries travel like
// pixel events (clients skip applying them) so continuity holds; their
// arrival time is Stats().LastCanary.
//
// # Lifecycle
//
// New validates Options; ServeHTTP works from then on (hello carries an
// empty epoch until Run has read Redis, followed by a resync once it has).
// Run returns nil when its context ends and never on Redis errors: it backs
// off with jitter, keeps clients connected, and when Redis returns re-reads
// its pending entries and continues.
package gateway
