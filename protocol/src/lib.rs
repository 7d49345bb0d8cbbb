//! Stoa's wire formats, as pure data: the Phoenix Channels V2 JSON frame, topic names,
//! every payload Stoa sends or accepts on a channel, and the header of a client's WebSocket
//! frame (where the size limits are applied).
//!
//! Decoding is strict and total: any input, however malformed or large, yields a value or
//! an error, never a panic. Nothing here performs I/O or knows about sockets or actors.

pub mod bus;
pub mod frame;
pub mod payload;
pub mod topic;
pub mod ws;

pub use frame::{Frame, FrameError};
pub use payload::{Inbound, InboundError, PresenceDiff, PresenceMeta, PresenceState, ReplyStatus};
pub use topic::{Topic, TopicError};

/// The topic Phoenix clients send heartbeats on.
pub const PHOENIX_TOPIC: &str = "phoenix";
