//! The Redis and RabbitMQ buses run the same conformance suite as the in-process hub
//! (actors/tests/common/conformance.rs), here against a private `redis-server` and a
//! virtual host of its own on the machine's RabbitMQ.

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

#[actix_web::test]
async fn the_rabbitmq_bus_passes_the_conformance_suite() {
    let Some(vhost) = crate::harness::PrivateVhost::create() else {
        return;
    };
    let url = vhost.url();
    conformance::run_once_connected(|rt| {
        Arc::new(stoa::amqp::RabbitBus::start(&url, rt.inbox()).expect("bus starts"))
    })
    .await;
}

/// While Redis is away, what waits to be published is bounded (65,536 messages): the rest
/// is dropped at once and counted, never queued without end. No Redis is needed: the URL
/// names a port nothing listens on.
#[actix_web::test]
async fn the_publish_queue_is_bounded_while_redis_is_away() {
    use stoa_actors::Bus;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let rt = stoa_actors::Realtime::new(
        Arc::new(crate::actors_common::Gate::default()),
        Arc::new(crate::actors_common::EmptyLog),
        stoa_actors::Limits::default(),
    );
    let bus = RedisBus::start(&format!("redis://127.0.0.1:{port}/"), rt.inbox()).expect("bus");
    let offered = 70_000u64;
    for n in 0..offered {
        bus.publish("stoa:t:workspace:1", format!("message {n}").into_bytes());
    }
    let dropped = bus
        .health
        .dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    // Everything beyond the queue and the one batch being sent was refused on the spot.
    assert!(
        dropped >= offered - 65_536 - 512,
        "{dropped} of {offered} dropped while Redis is away"
    );
    assert!(!bus.health.connected());
}

/// A bus whose Redis keeps failing tries again with backoff (0.1 s doubling), not in a
/// tight loop: over three seconds, a handful of attempts. The "Redis" here accepts each
/// connection and closes it at once, and counts them.
#[actix_web::test]
async fn a_failing_redis_is_retried_with_backoff() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = attempts.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(conn);
        }
    });
    let rt = stoa_actors::Realtime::new(
        Arc::new(crate::actors_common::Gate::default()),
        Arc::new(crate::actors_common::EmptyLog),
        stoa_actors::Limits::default(),
    );
    let bus = RedisBus::start(&format!("redis://127.0.0.1:{port}/"), rt.inbox()).expect("bus");
    // Attempts at about 0, 0.1, 0.3, 0.7, 1.5 and 3.1 s.
    actix_web::rt::time::sleep(std::time::Duration::from_millis(3300)).await;
    let n = attempts.load(std::sync::atomic::Ordering::SeqCst);
    assert!((3..=12).contains(&n), "{n} connection attempts in 3.3 s");
    assert!(!bus.health.connected());
}
