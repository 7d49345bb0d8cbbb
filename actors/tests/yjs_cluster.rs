//! Yjs updates from another node wait in a document's mailbox within its bound: a document
//! too busy to take them sheds them (counted) and reads its log for them instead, so its
//! editors end up with every edit all the same.

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Gate, MemDocs, Wire};
use stoa_actors::outbox::{Outbound, OutboxReader, Take};
use stoa_actors::{Limits, LocalHub, Realtime, WireIn, YjsSession};
use tokio::sync::mpsc;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{GetString, ReadTxn, StateVector, Text, Transact, Update};

/// Opens a Yjs socket of user 7 on document 5 on `rt`, from the calling thread.
fn open(rt: &Realtime) -> (mpsc::UnboundedSender<WireIn>, OutboxReader) {
    let (wire, incoming) = mpsc::unbounded_channel();
    let permit = rt.admit(7).expect("admitted");
    let reader = YjsSession::start(
        rt,
        permit,
        5,
        1,
        true,
        i64::MAX,
        Instant::now(),
        Wire(incoming),
    )
    .expect("a document store");
    (wire, reader)
}

/// Applies every update the socket receives to `doc`, until its text holds `want` pieces
/// or `patience` passes; the text.
async fn follow(
    reader: &mut OutboxReader,
    doc: &yrs::Doc,
    want: usize,
    patience: Duration,
) -> String {
    let text = doc.get_or_insert_text("content");
    let deadline = Instant::now() + patience;
    let mut frames = VecDeque::new();
    loop {
        let now = text.get_string(&doc.transact());
        if now.matches('|').count() >= want {
            return now;
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return now;
        };
        let take = std::future::poll_fn(|cx| reader.poll_take(cx, &mut frames, usize::MAX));
        match actix::clock::timeout(left, take).await {
            Ok(Take::Frames { .. }) => {
                for frame in frames.drain(..) {
                    let Outbound::Binary(bytes) = frame else {
                        continue;
                    };
                    let update = match Message::decode_v1(&bytes) {
                        Ok(Message::Sync(SyncMessage::Update(u) | SyncMessage::SyncStep2(u))) => u,
                        _ => continue,
                    };
                    if let Ok(u) = Update::decode_v1(&update) {
                        let _ = doc.transact_mut().apply_update(u);
                    }
                }
            }
            Ok(Take::Close(reason)) => panic!("socket closed: {}", reason.reason),
            Err(_) => return text.get_string(&doc.transact()),
        }
    }
}

#[actix::test]
async fn updates_a_busy_document_shed_are_read_from_its_log() {
    let store = Arc::new(MemDocs::default());
    let hub = LocalHub::new();
    let limits = Limits {
        topic_mailbox: 4,
        ..Limits::default()
    };
    let gate = Arc::new(Gate::default());
    let node = |id: &str| {
        let rt = common::node_on(&hub, id, limits.clone(), &gate, |_| {});
        rt.set_doc_store(store.clone());
        rt
    };
    let (a, b) = (node("a"), node("b"));

    // Node a's editor (and so its document) lives on a thread of its own, which the test
    // can hold up; node b's on the test's thread.
    let thread_a = actix::Arbiter::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let a2 = a.clone();
    assert!(thread_a.spawn(async move {
        let _ = tx.send(open(&a2));
    }));
    let (to_a, mut from_a) = rx.await.expect("opened on a");
    let (to_b, _from_b) = open(&b);
    let step1 = Message::Sync(SyncMessage::SyncStep1(StateVector::default())).encode_v1();
    to_a.send(WireIn::Binary(step1.clone())).unwrap();
    to_b.send(WireIn::Binary(step1)).unwrap();
    let seen_by_a = yrs::Doc::new();
    follow(&mut from_a, &seen_by_a, 0, Duration::from_millis(300)).await;

    // Two rounds: a's thread is held up for 1.5 s while b's editor types twenty pieces,
    // each written and sent to a on its own. (The first round also outlasts the read of
    // the log a document makes a second after it loads, so the second round's edits can
    // only reach a through the reread.)
    let typist = yrs::Doc::new();
    let text = typist.get_or_insert_text("content");
    let mut want = String::new();
    for round in 0..2 {
        let shed_before = a
            .stats()
            .topic_shed
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(thread_a.spawn(async { std::thread::sleep(Duration::from_millis(1500)) }));
        for i in 0..20 {
            let piece = format!("r{round}p{i}|");
            let before = typist.transact().state_vector();
            {
                let mut txn = typist.transact_mut();
                let at = text.len(&txn);
                text.insert(&mut txn, at, &piece);
            }
            want.push_str(&piece);
            let update = typist.transact().encode_state_as_update_v1(&before);
            let frame = Message::Sync(SyncMessage::Update(update)).encode_v1();
            to_b.send(WireIn::Binary(frame)).unwrap();
            actix::clock::sleep(Duration::from_millis(30)).await;
        }
        let shed = a
            .stats()
            .topic_shed
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            shed > shed_before,
            "round {round}: the busy document took every update"
        );
        // Once a's thread moves again, its editor has every piece, in b's order.
        let got = follow(
            &mut from_a,
            &seen_by_a,
            20 * (round + 1),
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(got, want, "round {round}");
    }
    thread_a.stop();
}
