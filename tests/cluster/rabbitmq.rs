//! The cluster suite's scenarios on RabbitMQ (`bus.url = amqp://…`): each node set on a
//! `rabbitmq-server` of the test's own, which the outage test kills (-9) and starts again.

use crate::harness::{Cluster, PrivateRabbit};

#[actix_web::test]
async fn over_rabbitmq_writes_broadcasts_notifications_and_revocations_reach_every_node() {
    let Some(c) = Cluster::start_rabbit(3, &[]).await else {
        return;
    };
    crate::across::everything_crosses(&c);
}

#[actix_web::test]
async fn over_rabbitmq_yjs_updates_and_a_role_change_reach_every_node() {
    let Some(c) = Cluster::start_rabbit(2, &[]).await else {
        return;
    };
    crate::across::role_change_crosses(&c);
}

#[actix_web::test]
async fn over_rabbitmq_presence_crosses_nodes_and_a_killed_node_leaves_within_the_expiry() {
    let Some(c) = Cluster::start_rabbit(3, &crate::failure::ENV).await else {
        return;
    };
    crate::failure::a_killed_node_leaves(c);
}

#[actix_web::test]
async fn a_rabbitmq_restart_under_writes_loses_no_event_and_presence_reconciles() {
    let Some(c) = Cluster::start_rabbit(3, &[]).await else {
        return;
    };
    crate::failure::an_outage_loses_nothing(c);
}

#[actix_web::test]
async fn nodes_reach_a_rabbitmq_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = crate::trust::certificates(certs.path()) else {
        panic!("openssl cannot make the test's certificates");
    };
    let Some(rabbit) = PrivateRabbit::start_tls(&ca, &cert, &key) else {
        return;
    };
    assert!(rabbit.url().starts_with("amqps://"));
    // The nodes trust the private CA the way any rustls client on the host would.
    let Some(c) = Cluster::start_on(rabbit, 2, &[("SSL_CERT_FILE", ca.as_str())]).await else {
        return;
    };
    crate::trust::nodes_talk(&c);
    // A node that does not trust that CA stays degraded: it never talks to an impostor.
    let lone = crate::support::Server::start(&[
        ("STOA_DATABASE__URL", &c.db.url),
        ("STOA_BUS__URL", &c.broker.url()),
        ("STOA_AUTH__JWT_SECRET", crate::harness::SECRET),
    ]);
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    let ready = loop {
        let ready = lone.http("GET", "/readyz", &[], b"").value();
        assert_eq!(ready["status"], "degraded", "{ready}");
        // Past "connecting": the attempt failed, and says why.
        if !ready.to_string().contains("connecting") {
            break ready;
        }
        assert!(std::time::Instant::now() < deadline, "{ready}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        ready.to_string().to_lowercase().contains("certificate")
            || ready.to_string().contains("UnknownIssuer"),
        "{ready}"
    );
}
