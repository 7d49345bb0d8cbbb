//! The cluster suite's scenarios on RabbitMQ (`bus.url = amqp://…`): each node set on a
//! `rabbitmq-server` of the test's own, which the outage test kills (-9) and starts again.

use crate::harness::Cluster;

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
