//! A join with `since` whose read of the log runs ahead of the live stream: the log already
//! holds events the topic has not heard yet, so the subscriber is sent them from the log,
//! and live delivery must not send them again when they arrive.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::{Gate, Harness};
use serde_json::{json, Value};
use stoa_actors::ports::{EventLog, LiveEvent, LogError};
use stoa_actors::{Limits, Realtime};

fn event(offset: i64) -> LiveEvent {
    LiveEvent {
        workspace_id: 1,
        offset,
        document_id: None,
        payload: Arc::new(json!({ "offset": offset })),
        born: 0,
    }
}

/// A log that has committed 1..=5 while the topic, starting, is told its head is 2 (the
/// commits of 3..=5 have not been published yet).
struct AheadLog;

#[async_trait]
impl EventLog for AheadLog {
    async fn latest_offset(&self, _workspace: i64) -> Result<i64, LogError> {
        Ok(2)
    }

    async fn events_after(
        &self,
        _: i64,
        after: i64,
        limit: u32,
    ) -> Result<Vec<LiveEvent>, LogError> {
        Ok((after + 1..=5).take(limit as usize).map(event).collect())
    }
}

fn offsets(frames: &[Value]) -> Vec<i64> {
    frames
        .iter()
        .filter(|f| f[3] == "event")
        .filter_map(|f| f[4]["offset"].as_i64())
        .collect()
}

#[actix::test]
async fn events_the_log_gave_a_rejoin_are_not_sent_again_when_they_arrive_live() {
    let gate = Arc::new(Gate::default());
    let rt = Realtime::new(gate.clone(), Arc::new(AheadLog), Limits::default());
    let mut h = Harness::start_on(rt, gate);
    h.send(json!(["1", "1", "workspace:1", "phx_join", { "since": 0 }]));
    let caught_up = h.client.until(|seen| offsets(seen).len() >= 5).await;
    assert_eq!(offsets(&caught_up), [1, 2, 3, 4, 5], "from the log");
    // Now the topic hears 3, 4 and 5 (published late) and 6.
    for offset in 3..=6 {
        h.rt.publish(event(offset));
    }
    let live = h.client.until(|seen| !offsets(seen).is_empty()).await;
    assert_eq!(offsets(&live), [6], "each event once, in order");
}
