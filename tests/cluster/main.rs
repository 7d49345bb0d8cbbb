//! A cluster of real nodes: three processes of the `stoa` binary on loopback, one
//! PostgreSQL database, and a private `redis-server` on a free port (the shared Redis is
//! never touched), or a private `rabbitmq-server`. What a client on one node sees of what
//! happens on the others.
//!
//! Needs `redis-server` on the PATH, Debian's `rabbitmq-server`, and PostgreSQL
//! (`TEST_POSTGRES_URL` or the default);
//! without them the tests are skipped with a notice, except under `CI=true`, where they
//! fail.

/// The actors' test harness and bus conformance suite, shared with this crate.
#[path = "../../actors/tests/common/mod.rs"]
mod actors_common;
#[path = "../common/mod.rs"]
mod common;
#[path = "../hostile/support.rs"]
mod support;

mod harness;
#[path = "../webhooks/receiver.rs"]
mod receiver;

mod across;
mod browser;
mod conformance;
mod dashboards;
mod failure;
mod loadtest;
mod phoenix;
mod rabbitmq;
mod trust;
mod webhooks;
