//! WebSocket frames that break the protocol or its limits, each refused from the bytes that
//! break it, before anything after them is read.

use serde_json::json;

use crate::support::*;

/// The default `realtime.max_frame_bytes`.
const LIMIT: u64 = 64 * 1024;

#[test]
fn a_frame_announcing_a_terabyte_is_refused_from_its_header() {
    let _heavy = heavy();
    let server = Server::start(&[]);
    let (_, token) = server.register("mallory");

    // The header alone, not one byte of payload: the server answers 1009 at once.
    let mut ws = live_socket(&server, &token);
    ws.send_bytes(&RawWs::header(true, TEXT, 1 << 40)).unwrap();
    assert_eq!(ws.close_code(), Some(1009));
    assert!(ws.ended(), "the connection ends after the close frame");

    // The same header followed by 256 MiB: none of it is kept.
    let before = server.rss_kib();
    let mut ws = live_socket(&server, &token);
    ws.send_bytes(&RawWs::header(true, TEXT, 1 << 40)).unwrap();
    let sent = stream_filler(&mut ws.stream, 256 << 20);
    let grown = server.rss_kib().saturating_sub(before);
    assert!(
        grown < 32 * 1024,
        "server memory grew by {grown} KiB while {sent} bytes were streamed"
    );
    assert!(server.healthy());

    // A frame just over the limit is refused too; one at the limit is read (and, not
    // being a Phoenix frame, answered with an error on the socket, which stays up).
    let mut ws = live_socket(&server, &token);
    ws.send_bytes(&RawWs::header(true, TEXT, LIMIT + 1))
        .unwrap();
    assert_eq!(ws.close_code(), Some(1009));
    let mut ws = live_socket(&server, &token);
    ws.send_frame(true, TEXT, &vec![b' '; LIMIT as usize])
        .unwrap();
    let v = ws.next_json();
    assert_eq!(v[3], "phx_error", "{v}");
    let r = ws.push(None, "phoenix", "heartbeat", json!({}));
    assert_eq!(ws.reply(&r)[4]["status"], "ok");
}

#[test]
fn a_fragmented_message_is_refused_at_the_fragment_that_takes_it_over_the_limit() {
    let server = Server::start(&[]);
    let (_, token) = server.register("mallory");

    let mut ws = live_socket(&server, &token);
    ws.send_frame(false, TEXT, &vec![b' '; 40 * 1024]).unwrap();
    // 40 KiB more would make 80 KiB: refused from this header, no payload follows.
    ws.send_bytes(&RawWs::header(true, CONTINUATION, 40 * 1024))
        .unwrap();
    assert_eq!(ws.close_code(), Some(1009));

    // Many small fragments add up the same way.
    let mut ws = live_socket(&server, &token);
    ws.send_frame(false, TEXT, b"[").unwrap();
    let piece = vec![b' '; 1024];
    let mut refused = None;
    for _ in 0..200 {
        if ws.send_frame(false, CONTINUATION, &piece).is_err() {
            break;
        }
        if let Some(Got::Close(code)) = ws.read(std::time::Duration::from_millis(1)) {
            refused = code;
            break;
        }
    }
    let code = refused.or_else(|| ws.close_code());
    assert_eq!(code, Some(1009));

    // A fragmented message within the limit is joined and handled.
    let mut ws = live_socket(&server, &token);
    let text = json!([null, "7", "phoenix", "heartbeat", {}]).to_string();
    let (a, b) = text.as_bytes().split_at(10);
    ws.send_frame(false, TEXT, a).unwrap();
    ws.send_frame(true, CONTINUATION, b).unwrap();
    assert_eq!(ws.reply("7")[4]["status"], "ok");
    assert!(server.healthy());
}

#[test]
fn protocol_violations_close_with_1002_and_change_nothing() {
    let server = Server::start(&[]);
    let (_, token) = server.register("mallory");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a ping announcing an extended length", {
            let mut h = RawWs::header(true, PING, 200);
            h.extend_from_slice(&[0; 200]);
            h
        }),
        ("a fragmented ping", RawWs::header(false, PING, 0)),
        ("an unmasked frame", vec![0x81, 0x02, b'{', b'}']),
        ("reserved bits", vec![0xF1, 0x80, 0, 0, 0, 0]),
        ("an unknown opcode", vec![0x83, 0x80, 0, 0, 0, 0]),
        ("a continuation without a start", {
            let mut h = RawWs::header(true, CONTINUATION, 2);
            h.extend_from_slice(b"{}");
            h
        }),
        ("a close frame of one byte", {
            let mut h = RawWs::header(true, CLOSE, 1);
            h.push(0x03);
            h
        }),
        ("a close code no endpoint may send", {
            let mut h = RawWs::header(true, CLOSE, 2);
            h.extend_from_slice(&1005u16.to_be_bytes());
            h
        }),
    ];
    for (what, bytes) in cases {
        let mut ws = live_socket(&server, &token);
        ws.send_bytes(&bytes).unwrap();
        assert_eq!(ws.close_code(), Some(1002), "{what}");
    }
    // Text that is not UTF-8, in a message or a close reason: 1007.
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("text that is not UTF-8", {
            let mut h = RawWs::header(true, TEXT, 3);
            h.extend_from_slice(&[0xC3, 0x28, 0xFF]);
            h
        }),
        ("a message whose fragments split a character", {
            let mut h = RawWs::header(false, TEXT, 1);
            h.push(0xC3);
            h.extend_from_slice(&RawWs::header(true, CONTINUATION, 1));
            h.push(b'(');
            h
        }),
        ("a close reason that is not UTF-8", {
            let mut h = RawWs::header(true, CLOSE, 4);
            h.extend_from_slice(&[0x03, 0xE8, 0xC3, 0x28]);
            h
        }),
    ];
    for (what, bytes) in cases {
        let mut ws = live_socket(&server, &token);
        ws.send_bytes(&bytes).unwrap();
        assert_eq!(ws.close_code(), Some(1007), "{what}");
    }
    // Binary frames are not part of this protocol: 1003.
    let mut ws = live_socket(&server, &token);
    ws.send_frame(true, BINARY, &[1, 2, 3]).unwrap();
    assert_eq!(ws.close_code(), Some(1003));
    assert!(server.healthy());
    assert!(
        server.log_lines("ERROR").is_empty(),
        "client faults are not server errors: {:#?}",
        server.log_lines("ERROR")
    );
}

#[test]
fn truncated_frames_and_abandoned_sockets_leave_nothing_behind() {
    let server = Server::start(&[]);
    let (_, token) = server.register("mallory");
    let files = server.open_files();
    for i in 0..40 {
        let mut ws = live_socket(&server, &token);
        let cut: &[u8] = match i % 4 {
            // Half a header, a header without its mask, a header without its payload,
            // half a payload.
            0 => &[0x81],
            1 => &[0x81, 0xFE, 0x01],
            2 => &[0x81, 0x85, 0, 0, 0, 0],
            _ => &[0x81, 0x85, 0, 0, 0, 0, b'[', b'n'],
        };
        ws.send_bytes(cut).unwrap();
        drop(ws);
    }
    // Every one of them is closed and counted down.
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let metrics = crate::common::without_node(&server.http("GET", "/metrics", &[], b"").text());
        let open = metrics
            .lines()
            .find_map(|l| l.strip_prefix("stoa_ws_sockets "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if open == Some(0.0) && server.open_files() <= files + 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sockets still open: {open:?}, files {} (before {files})",
            server.open_files()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(server.healthy());
}
