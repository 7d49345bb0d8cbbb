//! Collaborative documents over the y-websocket protocol.
//!
//! One [`DocActor`] per open document on this node holds the document (a `yrs` doc) and its
//! awareness, applies what editors send, relays it to the document's other connections and
//! appends every update to the store, in small batches, compacting the log into one
//! snapshot now and then. One [`YjsSession`] per socket reads the client's binary frames,
//! checks that they are well-formed y-protocol messages, limits their rate and hands them
//! to the document; what the document sends the client goes through the socket's
//! [`Outbox`](crate::outbox::Outbox) like every other frame, so a Yjs client that cannot keep up is
//! disconnected (`slow_consumer`) as a channel client is.
//!
//! A document is loaded from the store (its snapshot and the updates after it) before any
//! client message is applied: the actor's mailbox waits for the load (`ctx.wait`). It is
//! unloaded once its last connection has gone and `Limits::doc_idle` has passed with its
//! updates written.
//!
//! - [`text`]: a document's text as REST, search and reports see it, and a REST write made
//!   a Yjs change (plain functions over a `yrs` doc, with their own tests);
//! - `doc`: the documents open on this node ([`Docs`]) and each one's [`DocActor`];
//! - `session`: one [`YjsSession`] per socket.
//!
//! Where updates are kept is the [`DocStore`](crate::ports::DocStore) port.

mod doc;
mod session;
pub mod text;

pub(crate) use doc::Docs;
pub use session::YjsSession;
