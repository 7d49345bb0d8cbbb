//! The WebSocket transport: everything between a TCP socket and an actor message.
//!
//! - [`upgrade`]: actix-web answers the upgrade request (routing, middleware, the
//!   endpoint's checks in `api::socket` and `api::yjs`); a 101 carrying an [`Accepted`]
//!   hands the connection over, and from then on the socket is Stoa's.
//! - `read`: the client's frames, judged by their headers before any payload is read
//!   ([`Incoming`]), handed to the session actor.
//! - `write`: frames from the session's outbox onto the socket ([`Writer`]), and the
//!   one-send helpers the flush task writes with.
//! - `flush`: one task per transport thread delivers what the thread's inbox holds, in
//!   order, straight to idle sockets, and a topic's fan-out to its share of the
//!   subscribers.
//!
//! The queues between the actors and this module (outboxes, thread inboxes, fan-outs) are
//! `stoa_actors::outbox`: actors write into them, only this module drains them and touches
//! sockets. A socket is named to an outbox by a `SocketHandle`, which only this module
//! makes (its constructor is `unsafe`, and `Writer::new` is the one call).

mod flush;
mod read;
pub mod upgrade;
mod write;

pub use read::Incoming;
pub use upgrade::{Accepted, SocketKind};
pub use write::Writer;
