//! The y-websocket endpoint under hostile input: malformed and oversized messages, the
//! wrong kind of frame, updates that do not decode, and client ids no browser makes. Each
//! closes that socket with a clear code; the document is unchanged and the server healthy.

use std::time::Duration;

use serde_json::json;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{GetString, StateVector, Transact, Update};

use crate::support::*;

/// The default `realtime.max_yjs_message_bytes`.
const LIMIT: u64 = 4 * 1024 * 1024;

fn open(server: &Server, doc: i64, token: &str) -> RawWs {
    let mut ws = RawWs::open(server, &format!("/yjs/{doc}?token={token}"))
        .unwrap_or_else(|r| panic!("upgrade refused: {} {}", r.status, r.text()));
    // The server speaks first: its sync step 1.
    match ws.read(PATIENCE) {
        Some(Got::Binary(b)) => assert_eq!(&b[..2], &[0, 0], "sync step 1 first"),
        other => panic!("expected the server's sync step 1, got {other:?}"),
    }
    ws
}

/// The document's text as a fresh client syncing now receives it.
fn text_now(server: &Server, doc: i64, token: &str) -> String {
    let mut ws = open(server, doc, token);
    let step1 = Message::Sync(SyncMessage::SyncStep1(StateVector::default())).encode_v1();
    ws.send_frame(true, BINARY, &step1).unwrap();
    loop {
        match ws.read(PATIENCE) {
            Some(Got::Binary(b)) => {
                if let Ok(Message::Sync(SyncMessage::SyncStep2(update))) = Message::decode_v1(&b) {
                    let d = yrs::Doc::new();
                    let text = d.get_or_insert_text("content");
                    let mut txn = d.transact_mut();
                    txn.apply_update(Update::decode_v1(&update).unwrap())
                        .unwrap();
                    return text.get_string(&txn);
                }
            }
            other => panic!("expected the sync reply, got {other:?}"),
        }
    }
}

#[test]
fn hostile_yjs_messages_close_that_socket_and_change_nothing() {
    let server = Server::start(&[]);
    let (_, token) = server.register("mallory");
    let ws_id = server.workspace_with(&token, &[]);
    let doc = server.document(
        &token,
        ws_id,
        json!({"title": "Target", "content": "original"}),
    );
    assert_eq!(text_now(&server, doc, &token), "original");

    // A text frame: this endpoint speaks binary only.
    let mut ws = open(&server, doc, &token);
    ws.send_frame(true, TEXT, b"[\"hello\"]").unwrap();
    assert_eq!(ws.close_code(), Some(1003));

    // Truncated: a sync step 2 announcing 50 bytes and carrying 2.
    let mut ws = open(&server, doc, &token);
    ws.send_frame(true, BINARY, &[0, 1, 50, 1, 2]).unwrap();
    assert_eq!(ws.close_code(), Some(1007));

    // Empty, and a sync message of an unknown kind.
    let mut ws = open(&server, doc, &token);
    ws.send_frame(true, BINARY, &[]).unwrap();
    assert_eq!(ws.close_code(), Some(1007));
    let mut ws = open(&server, doc, &token);
    ws.send_frame(true, BINARY, &[0, 9, 0]).unwrap();
    assert_eq!(ws.close_code(), Some(1007));

    // A well-framed update whose bytes are no Yjs update.
    let mut ws = open(&server, doc, &token);
    let bogus = Message::Sync(SyncMessage::Update(vec![0xff; 40])).encode_v1();
    ws.send_frame(true, BINARY, &bogus).unwrap();
    assert_eq!(ws.close_code(), Some(1008));

    // Awareness for a client id no browser makes (above 2^53), and a state that is no
    // JSON: the server neither panics nor closes other sockets.
    let mut ws = open(&server, doc, &token);
    let mut awareness = vec![1u8];
    let mut body = vec![1u8]; // one entry
    body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]); // id
    body.push(1); // clock
    body.push(3);
    body.extend_from_slice(b"{{{");
    awareness.push(body.len() as u8);
    awareness.extend_from_slice(&body);
    ws.send_frame(true, BINARY, &awareness).unwrap();
    // The socket is answered or closed with a code; either way the server goes on.
    let _ = ws.read(Duration::from_millis(500));

    // Larger than the limit, refused from its header.
    let mut ws = open(&server, doc, &token);
    ws.send_bytes(&RawWs::header(true, BINARY, LIMIT + 1))
        .unwrap();
    assert_eq!(ws.close_code(), Some(1009));

    assert!(server.healthy());
    assert_eq!(
        text_now(&server, doc, &token),
        "original",
        "nothing sent above changed the document"
    );
}

#[test]
fn a_flood_of_yjs_messages_is_cut_off_and_others_still_read_the_document() {
    let server = Server::start(&[]);
    let (_, token) = server.register("mallory");
    // Mallory's own allowance is spent by the flood (all her sockets share it): another
    // member looks at the document afterwards.
    let (reader, reader_token) = server.register("reader");
    let ws_id = server.workspace_with(&token, &[(reader, "viewer")]);
    let doc = server.document(&token, ws_id, json!({"title": "Target"}));
    let mut ws = open(&server, doc, &token);
    // Awareness query after awareness query, far faster than any editor types.
    let mut code = None;
    for _ in 0..5_000 {
        if ws.send_frame(true, BINARY, &[3]).is_err() {
            break;
        }
    }
    while let Some(got) = ws.read(PATIENCE) {
        if let Got::Close(c) = got {
            code = c;
            break;
        }
    }
    assert_eq!(code, Some(1008), "rate_limited");
    assert!(server.healthy());
    assert_eq!(text_now(&server, doc, &reader_token), "");
}

#[test]
fn a_yjs_client_that_stops_reading_is_disconnected_as_a_slow_consumer() {
    use yrs::{ReadTxn, Text};
    let _heavy = heavy();
    // A document of 14 MiB, past the default cap of 4 MiB: what fills the stalled reader's
    // queue and socket buffers is the point here.
    let server = Server::start(&[
        ("STOA_REALTIME__MAX_YJS_MESSAGE_BYTES", "33554432"),
        ("STOA_REALTIME__MAX_DOCUMENT_BYTES", "33554432"),
    ]);
    let (_, writer_token) = server.register("writer");
    let (bob, bob_token) = server.register("bob");
    let ws_id = server.workspace_with(&writer_token, &[(bob, "viewer")]);
    let doc = server.document(&writer_token, ws_id, json!({"title": "Big"}));

    // Bob opens the document and never reads again.
    let mut stalled = open(&server, doc, &bob_token);
    let mut writer = open(&server, doc, &writer_token);
    let before = server.metric("stoa_ws_slow_consumers_total");

    // 150 updates of 96 KiB (within the writer's burst of 200 messages): far more than the
    // sockets' buffers and bob's 1 MiB queue hold.
    let editor = yrs::Doc::new();
    let text = editor.get_or_insert_text("content");
    let piece = "y".repeat(96 * 1024);
    for _ in 0..150 {
        let sv = editor.transact().state_vector();
        {
            let mut txn = editor.transact_mut();
            let end = text.len(&txn);
            text.insert(&mut txn, end, &piece);
        }
        let update = editor.transact().encode_state_as_update_v1(&sv);
        let msg = Message::Sync(SyncMessage::Update(update)).encode_v1();
        writer.send_frame(true, BINARY, &msg).unwrap();
    }
    let deadline = std::time::Instant::now() + PATIENCE;
    while server.metric("stoa_ws_slow_consumers_total") <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "the stalled reader was not disconnected"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // What bob can still read ends with the reason.
    assert_eq!(stalled.close_code(), Some(1008));
    // The writer is unaffected, and the document holds every update.
    assert!(server.healthy());
    assert_eq!(text_now(&server, doc, &writer_token).len(), 150 * 96 * 1024);
    drop(writer);
}

#[test]
fn updates_are_compacted_and_survive_a_restart_on_sqlite() {
    use yrs::{ReadTxn, Text};
    let data = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite://{}/stoa.db", data.path().display());
    let env = [
        ("STOA_DATABASE__URL", db.as_str()),
        (
            "STOA_AUTH__JWT_SECRET",
            "restart-test-secret-0123456789abcdefGHIJKLMNOPQRSTUV",
        ),
        // 300 updates from one editor at once, beyond the default allowances.
        ("STOA_REALTIME__MESSAGES_PER_SEC", "10000"),
        ("STOA_REALTIME__MESSAGE_BURST", "10000"),
        ("STOA_REALTIME__USER_MESSAGES_PER_SEC", "10000"),
        ("STOA_REALTIME__USER_MESSAGE_BURST", "10000"),
    ];
    let mut server = Server::start(&env);
    let (_, token) = server.register("alice");
    let ws_id = server.workspace_with(&token, &[]);
    let doc = server.document(&token, ws_id, json!({"title": "Long"}));

    let mut editor_ws = open(&server, doc, &token);
    let editor = yrs::Doc::new();
    let text = editor.get_or_insert_text("content");
    let mut want = String::new();
    for i in 0..300 {
        let piece = format!("{i},");
        want.push_str(&piece);
        let sv = editor.transact().state_vector();
        {
            let mut txn = editor.transact_mut();
            let end = text.len(&txn);
            text.insert(&mut txn, end, &piece);
        }
        let update = editor.transact().encode_state_as_update_v1(&sv);
        let msg = Message::Sync(SyncMessage::Update(update)).encode_v1();
        editor_ws.send_frame(true, BINARY, &msg).unwrap();
    }
    // A sync step 1 behind them is answered once all 300 are applied (one socket's
    // messages are handled in order).
    let step1 = Message::Sync(SyncMessage::SyncStep1(StateVector::default())).encode_v1();
    editor_ws.send_frame(true, BINARY, &step1).unwrap();
    loop {
        match editor_ws.read(PATIENCE) {
            Some(Got::Binary(b)) if b.starts_with(&[0, 1]) => break,
            Some(_) => {}
            None => panic!("no answer to the sync step"),
        }
    }
    assert_eq!(text_now(&server, doc, &token), want);
    drop(editor_ws);
    assert!(server.terminate().success());

    // The log was compacted: far fewer rows than updates, and they still make the text.
    let rows = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use stoa::store::prelude::*;
            let mut settings = stoa::config::Settings::load_with_env(None, Vec::new()).unwrap();
            settings.database.url = db.clone();
            let store = stoa::store::SqlStore::connect(&settings.database)
                .await
                .expect("store opens");
            store.document_updates(doc, 0).await.unwrap().0
        });
    assert!(rows.len() < 100, "{} rows for 300 updates", rows.len());
    let d = yrs::Doc::new();
    let t = d.get_or_insert_text("content");
    {
        let mut txn = d.transact_mut();
        for u in &rows {
            txn.apply_update(Update::decode_v1(u).unwrap()).unwrap();
        }
    }
    assert_eq!(t.get_string(&d.transact()), want);

    // Restarted on the same database, the server serves the whole text.
    let server = Server::start(&env);
    assert_eq!(text_now(&server, doc, &token), want);
}

#[test]
fn a_node_at_its_cap_of_open_documents_refuses_one_more_but_serves_those_it_has() {
    let server = Server::start(&[("STOA_REALTIME__MAX_OPEN_DOCUMENTS", "1")]);
    let (_, token) = server.register("alice");
    let ws_id = server.workspace_with(&token, &[]);
    let made: Vec<i64> = (0..2)
        .map(|i| server.document(&token, ws_id, json!({"title": format!("D{i}")})))
        .collect();
    let _first = open(&server, made[0], &token);
    match RawWs::open(&server, &format!("/yjs/{}?token={token}", made[1])) {
        Err(r) => {
            assert_eq!(r.status, 503, "{}", r.text());
            assert!(r.header("retry-after").is_some());
        }
        Ok(_) => panic!("a second document opened beyond the cap"),
    }
    // The open document takes more editors.
    let _second = open(&server, made[0], &token);
    assert!(server.healthy());
}

/// A Yjs socket lives no longer than the token it was opened with: at its expiry the
/// server closes it with 1008, and the same token keeps no new one open (y-websocket has no
/// message to renew a token; the client reconnects with a fresh one in the URL).
#[test]
fn a_yjs_socket_is_closed_when_its_token_expires() {
    let server = Server::start(&[("STOA_AUTH__ACCESS_TOKEN_TTL_SECS", "2")]);
    let (_, token) = server.register("ada");
    let ws_id = server.workspace_with(&token, &[]);
    let doc = server.document(&token, ws_id, json!({"title": "Notes", "content": "x"}));
    let opened = std::time::Instant::now();
    let mut ws = open(&server, doc, &token);
    assert_eq!(ws.close_code(), Some(1008), "closed as token_expired");
    let lived = opened.elapsed();
    assert!(
        lived < Duration::from_secs(4),
        "closed only after {lived:?}"
    );
    // Within the verifier's few seconds of leeway for clock skew the upgrade may still be
    // answered, but the socket is closed at once; after it, it is refused.
    match RawWs::open(&server, &format!("/yjs/{doc}?token={token}")) {
        Err(refused) => assert_eq!(refused.status, 401),
        Ok(mut again) => {
            let t = std::time::Instant::now();
            assert_eq!(again.close_code(), Some(1008));
            assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        }
    }
}

/// A Yjs socket that says nothing for the heartbeat timeout is closed (1000), as a channel
/// socket is, by one timer per socket; one whose client keeps talking (here: pings every
/// 250 ms for 2.5 timeouts) stays open.
#[test]
fn a_silent_yjs_socket_is_closed_and_a_talking_one_kept() {
    let server = Server::start(&[("STOA_REALTIME__HEARTBEAT_TIMEOUT_SECS", "1")]);
    let (_, token) = server.register("ada");
    let ws_id = server.workspace_with(&token, &[]);
    let doc = server.document(&token, ws_id, json!({"title": "Notes", "content": "x"}));
    let mut silent = open(&server, doc, &token);
    let mut talking = open(&server, doc, &token);
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        talking.send_frame(true, PING, b"still here").unwrap();
        loop {
            match talking.read(PATIENCE) {
                Some(Got::Pong(p)) => {
                    assert_eq!(p, b"still here");
                    break;
                }
                Some(Got::Binary(_)) => continue,
                other => panic!("the talking socket got {other:?}"),
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(silent.close_code(), Some(1000), "the silent one is closed");
    // Once it falls silent, it goes too.
    let quiet_from = std::time::Instant::now();
    assert_eq!(talking.close_code(), Some(1000));
    assert!(quiet_from.elapsed() < Duration::from_secs(3));
    assert!(server.healthy());
}

#[test]
fn a_frame_of_several_updates_reaches_the_other_editor_whole_and_a_single_one_as_it_came() {
    use yrs::sync::MessageReader;
    use yrs::updates::decoder::DecoderV1;
    use yrs::{ReadTxn, Text};
    let server = Server::start(&[]);
    let (_, token) = server.register("alice");
    let ws_id = server.workspace_with(&token, &[]);
    let doc = server.document(&token, ws_id, json!({"title": "Pair"}));
    let mut a = open(&server, doc, &token);
    let mut b = open(&server, doc, &token);

    let editor = yrs::Doc::new();
    let text = editor.get_or_insert_text("content");
    let typed = |piece: &str| {
        let sv = editor.transact().state_vector();
        {
            let mut txn = editor.transact_mut();
            let end = text.len(&txn);
            text.insert(&mut txn, end, piece);
        }
        let update = editor.transact().encode_state_as_update_v1(&sv);
        Message::Sync(SyncMessage::Update(update)).encode_v1()
    };
    // Two updates in one frame, then one alone.
    let mut pair = typed("one,");
    pair.extend_from_slice(&typed("two,"));
    let single = typed("three");
    a.send_frame(true, BINARY, &pair).unwrap();
    a.send_frame(true, BINARY, &single).unwrap();

    let seen = yrs::Doc::new();
    let seen_text = seen.get_or_insert_text("content");
    let mut frames = Vec::new();
    while seen_text.get_string(&seen.transact()) != "one,two,three" {
        let Some(Got::Binary(frame)) = b.read(PATIENCE) else {
            panic!(
                "the other editor has {:?} and nothing more",
                seen_text.get_string(&seen.transact())
            );
        };
        let mut decoder = DecoderV1::from(frame.as_slice());
        for m in MessageReader::new(&mut decoder) {
            match m.expect("every relayed frame decodes whole") {
                Message::Sync(SyncMessage::Update(u)) => {
                    let update = Update::decode_v1(&u).expect("a relayed update decodes");
                    seen.transact_mut().apply_update(update).unwrap();
                }
                other => panic!("only updates were sent, got {other:?}"),
            }
        }
        frames.push(frame);
    }
    assert_eq!(
        frames.last(),
        Some(&single),
        "a frame that is one update is relayed byte for byte"
    );
    assert_eq!(text_now(&server, doc, &token), "one,two,three");
}
