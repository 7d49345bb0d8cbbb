//! The hostile-client suite: the real `stoa` binary with its default settings, attacked the
//! way a registered user (or anyone on the network) could: malformed, oversized, truncated
//! and flooding input on every endpoint. Each test checks what the attacker got (a clear
//! refusal), what everyone else still gets, and that the server is healthy with its memory
//! bounded afterwards.

#[path = "../common/mod.rs"]
mod common;
mod support;

mod documents;
mod flood;
mod frames;
mod growth;
mod ops;
mod rest;
mod shutdown;
mod transport;
mod yjs;
