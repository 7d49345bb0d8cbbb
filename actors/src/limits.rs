//! The limits every live actor enforces, with defaults safe for a public server.

use std::time::Duration;

/// Per-connection, per-user and per-topic limits. The defaults are safe for a public server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest text frame a client may send, in bytes.
    pub max_frame_bytes: usize,
    /// Largest `broadcast` payload, in bytes of frame text.
    pub max_broadcast_bytes: usize,
    /// Sockets one user may have open on this node at once.
    pub max_sockets_per_user: u32,
    /// Topics one connection may have joined (or be joining) at once.
    pub max_topics_per_connection: usize,
    /// Sustained client messages per second per connection (heartbeats not counted).
    pub messages_per_sec: u32,
    /// Messages a connection may send in a burst above the sustained rate.
    pub message_burst: u32,
    /// Sustained messages per second of one user, all their sockets on this node together.
    pub user_messages_per_sec: u32,
    /// The burst allowed to one user above that rate.
    pub user_message_burst: u32,
    /// Broadcasts one topic relays per second (in a burst: twice as many), whoever sends them.
    pub topic_broadcasts_per_sec: u32,
    /// Bytes of broadcasts one topic relays per second (in a burst: one second's worth, and
    /// never less than one broadcast of the largest size).
    pub topic_broadcast_bytes_per_sec: u32,
    /// `presence:update` messages per second per connection and topic.
    pub presence_updates_per_sec: u32,
    /// Largest presence meta a client may set, in bytes of JSON.
    pub max_presence_meta_bytes: usize,
    /// Connections one topic tracks in its presence; later joins are not tracked.
    pub max_presence_metas: usize,
    /// Presence changes within this interval go out as one `presence_diff` (zero: each at
    /// once).
    pub presence_batch: Duration,
    /// Frames queued for one client before it counts as too slow and is disconnected.
    pub outbound_queue: usize,
    /// Bytes queued for one client before it counts as too slow (a single frame larger than
    /// this is still accepted into an empty queue).
    pub outbound_queue_bytes: usize,
    /// Messages a topic actor's mailbox holds; client messages beyond it are refused.
    pub topic_mailbox: usize,
    /// A connection silent for this long is closed.
    pub heartbeat_timeout: Duration,
    /// How far back (in events) a join with `since` may ask to be replayed.
    pub max_replay: i64,
    /// How long an out-of-order event waits for the events before it to arrive before
    /// they are read from the log.
    pub gap_grace: Duration,
    /// How often a quiet topic with subscribers reads its log for events whose live
    /// publication was lost (a publisher stopped between commit and publish, or the topic
    /// shed it while its mailbox was full).
    pub log_check: Duration,
    /// How long a topic actor without subscribers stays alive.
    pub topic_idle: Duration,
    /// Threads that run topic actors.
    pub topic_threads: usize,
    /// How long a document stays loaded after its last Yjs connection has gone.
    pub doc_idle: Duration,
    /// Largest message a Yjs client may send.
    pub max_yjs_message_bytes: usize,
    /// Documents with connections at once on this node.
    pub max_open_documents: usize,
    /// Largest a document's state may grow to through Yjs updates.
    pub max_document_bytes: usize,
    /// How long an access token lives (with the leeway its checks allow): how long a
    /// session end must be remembered.
    pub token_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_frame_bytes: 64 * 1024,
            max_broadcast_bytes: 16 * 1024,
            max_sockets_per_user: 100,
            max_topics_per_connection: 100,
            messages_per_sec: 50,
            message_burst: 100,
            user_messages_per_sec: 100,
            user_message_burst: 200,
            topic_broadcasts_per_sec: 200,
            topic_broadcast_bytes_per_sec: 512 * 1024,
            presence_updates_per_sec: 10,
            max_presence_meta_bytes: 1024,
            max_presence_metas: 500,
            presence_batch: Duration::from_millis(25),
            outbound_queue: 1024,
            outbound_queue_bytes: 1024 * 1024,
            topic_mailbox: 4096,
            heartbeat_timeout: Duration::from_secs(60),
            max_replay: 10_000,
            gap_grace: Duration::from_millis(100),
            log_check: Duration::from_secs(5),
            topic_idle: Duration::from_secs(30),
            topic_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            doc_idle: Duration::from_secs(10),
            max_yjs_message_bytes: 4 * 1024 * 1024,
            max_open_documents: 10_000,
            max_document_bytes: 4 * 1024 * 1024,
            token_lifetime: Duration::from_secs(900 + 5),
        }
    }
}
