//! The Redis bus runs the same conformance suite as the in-process hub
//! (actors/tests/common/conformance.rs), here against a private `redis-server`.

use std::sync::Arc;

use stoa::bus::RedisBus;

use crate::actors_common::conformance;
use crate::harness::PrivateRedis;

#[actix_web::test]
async fn the_redis_bus_passes_the_conformance_suite() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let url = redis.url();
    conformance::run(|rt| Arc::new(RedisBus::start(&url, rt.inbox()).expect("bus starts"))).await;
}
