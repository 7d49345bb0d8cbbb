//! A join authorised just before the membership behind it is removed must not land after
//! the removal. The authoriser here is a gate the test holds shut while it revokes, so the
//! interleaving is exact rather than left to timing.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use stoa_actors::ports::{Authorizer, Denied, EventLog, Grant, Identity, LiveEvent, LogError};
use stoa_actors::{Limits, Outbound, OutboxReader, Realtime, SessionActor, Take, WireIn};
use stoa_protocol::Topic;
use tokio::sync::{mpsc, oneshot};

/// Lets authorisations through, except one the test holds at the gate.
#[derive(Default)]
struct Gate {
    entered: Mutex<Option<oneshot::Sender<()>>>,
    open: Mutex<Option<oneshot::Receiver<()>>>,
}

#[async_trait]
impl Authorizer for Gate {
    async fn authorize(&self, _user: i64, _topic: Topic) -> Result<Grant, Denied> {
        let entered = self.entered.lock().unwrap().take();
        let open = self.open.lock().unwrap().take();
        if let Some(tx) = entered {
            let _ = tx.send(());
        }
        if let Some(rx) = open {
            let _ = rx.await;
        }
        Ok(Grant {
            workspace_id: Some(1),
            info: Map::new(),
        })
    }

    fn verify_token(&self, _token: &str) -> Result<Identity, Denied> {
        Err(Denied::InvalidToken)
    }
}

struct EmptyLog;

#[async_trait]
impl EventLog for EmptyLog {
    async fn latest_offset(&self, _workspace: i64) -> Result<i64, LogError> {
        Ok(0)
    }

    async fn events_after(&self, _: i64, _: i64, _: u32) -> Result<Vec<LiveEvent>, LogError> {
        Ok(Vec::new())
    }
}

/// The socket's read side, fed by the test.
struct Wire(mpsc::UnboundedReceiver<WireIn>);

impl futures_core::Stream for Wire {
    type Item = WireIn;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WireIn>> {
        self.0.poll_recv(cx)
    }
}

/// The socket's write side, read by the test.
struct Client {
    reader: OutboxReader,
    frames: VecDeque<Outbound>,
}

impl Client {
    async fn next(&mut self) -> Value {
        loop {
            if let Some(item) = self.frames.pop_front() {
                let text = match item {
                    Outbound::Text(t) => t,
                    Outbound::Push { head, tail } => format!("{head}{tail}"),
                    Outbound::Pong(_) => continue,
                };
                return serde_json::from_str(&text).expect("JSON frame");
            }
            let take = std::future::poll_fn(|cx| self.reader.poll_take(cx, &mut self.frames));
            let taken = actix::clock::timeout(Duration::from_secs(10), take)
                .await
                .expect("a frame within 10 s");
            assert!(matches!(taken, Take::Frames), "socket closed");
        }
    }
}

#[actix::test]
async fn a_join_authorised_before_a_removal_does_not_land_after_it() {
    let gate = Arc::new(Gate::default());
    let (entered_tx, entered) = oneshot::channel();
    let (open, open_rx) = oneshot::channel();
    *gate.entered.lock().unwrap() = Some(entered_tx);
    *gate.open.lock().unwrap() = Some(open_rx);
    let rt = Realtime::new(gate.clone(), Arc::new(EmptyLog), Limits::default());
    let (wire, incoming) = mpsc::unbounded_channel();
    let permit = rt.admit(7).expect("under the socket limit");
    let (_session, reader) = SessionActor::start(&rt, permit, i64::MAX, Wire(incoming));
    let mut client = Client {
        reader,
        frames: VecDeque::new(),
    };

    let join = r#"["1","1","workspace:1","phx_join",{}]"#;
    wire.send(WireIn::Text(join.into())).unwrap();
    entered.await.unwrap();
    // The check has read the membership; now it is removed, then the check answers.
    rt.revoke_member(1, 7, "membership_revoked");
    open.send(()).unwrap();
    let reply = client.next().await;
    assert_eq!(reply[3], "phx_reply");
    assert_eq!(reply[4]["status"], "error");
    assert_eq!(reply[4]["response"]["reason"], "unauthorized");

    // A join authorised after the removal (re-added, say) is accepted and live.
    let join = r#"["2","2","workspace:1","phx_join",{}]"#;
    wire.send(WireIn::Text(join.into())).unwrap();
    let reply = client.next().await;
    assert_eq!(
        (reply[1].clone(), reply[4]["status"].clone()),
        (json!("2"), json!("ok"))
    );
    let presence = client.next().await;
    assert_eq!(presence[3], "presence_state");
    rt.publish(LiveEvent {
        workspace_id: 1,
        offset: 1,
        document_id: None,
        payload: Arc::new(json!({"offset": 1})),
    });
    let event = client.next().await;
    assert_eq!(event[3], "event");
    assert_eq!(event[0], "2");
    let refused = rt
        .stats()
        .joins_refused
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(refused, 1);
}
