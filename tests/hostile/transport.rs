//! What the channel socket's transport does itself, byte by byte: frames arriving in any
//! pieces, frames larger than its read buffer, fragmented messages with control frames in
//! between, both directions of the close handshake, and a client that stops reading for a
//! while and then gets every frame intact and in order.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

/// A client frame with a real (non-zero) mask.
fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xFA, 0x21, 0x3D];
    let mut out = RawWs::header(fin, opcode, payload.len() as u64);
    let at = out.len() - 4;
    out[at..].copy_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn heartbeat(r: &str, pad: usize) -> Vec<u8> {
    json!([null, r, "phoenix", "heartbeat", {"pad": "x".repeat(pad)}])
        .to_string()
        .into_bytes()
}

/// The next frame must be the ok reply to `r`.
fn expect_reply(ws: &mut RawWs, r: &str) {
    let v = ws.next_json();
    assert_eq!(v[3], "phx_reply", "{v}");
    assert_eq!(v[1], r, "{v}");
    assert_eq!(v[4]["status"], "ok", "{v}");
}

/// Nothing arrives for a moment (the frame sent so far is incomplete).
fn expect_silence(ws: &mut RawWs, what: &str) {
    let got = ws.read(Duration::from_millis(3));
    assert!(got.is_none(), "{what}: answered early with {got:?}");
}

/// Waits until the server counts no open socket.
fn sockets_drop_to_zero(server: &Server) -> Duration {
    let start = Instant::now();
    while server.metric("stoa_ws_sockets") > 0.0 {
        assert!(start.elapsed() < PATIENCE, "sockets still open");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

#[test]
fn a_frame_split_at_any_byte_is_read_whole() {
    let server = Server::start(&[]);
    let (_, token) = server.register("ada");
    let mut ws = live_socket(&server, &token);

    // A frame with a 7-bit length and one with a 16-bit length, each cut at every byte:
    // nothing is answered until the last piece, then exactly one reply.
    for pad in [0, 300] {
        let frame = masked(true, TEXT, &heartbeat(&format!("p{pad}"), pad));
        for cut in 1..frame.len() {
            let r = format!("p{pad}");
            ws.send_bytes(&frame[..cut]).unwrap();
            expect_silence(&mut ws, &format!("{pad} cut at {cut}"));
            ws.send_bytes(&frame[cut..]).unwrap();
            expect_reply(&mut ws, &r);
        }
    }

    // Three frames, one byte per write: three replies, in order.
    let stream: Vec<u8> = ["a", "b", "c"]
        .iter()
        .flat_map(|r| masked(true, TEXT, &heartbeat(r, 0)))
        .collect();
    for byte in &stream {
        ws.stream.write_all(std::slice::from_ref(byte)).unwrap();
    }
    for r in ["a", "b", "c"] {
        expect_reply(&mut ws, r);
    }
    assert!(server.healthy());
}

#[test]
fn frames_larger_than_the_read_buffer_arrive_whole_in_any_pieces() {
    let server = Server::start(&[]);
    let (_, token) = server.register("ada");
    let mut ws = live_socket(&server, &token);

    // 60 KB, most of the 64 KiB limit, in 1,000-byte writes, with a small frame right
    // behind it in the last write.
    let big = masked(true, TEXT, &heartbeat("big", 60_000));
    let small = masked(true, TEXT, &heartbeat("small", 0));
    let mut bytes = big.clone();
    bytes.extend_from_slice(&small);
    for piece in bytes.chunks(1000) {
        ws.send_bytes(piece).unwrap();
    }
    expect_reply(&mut ws, "big");
    expect_reply(&mut ws, "small");

    // Small frames, a large one and small ones again, all in one write.
    let mut bytes = Vec::new();
    for r in ["1", "2"] {
        bytes.extend(masked(true, TEXT, &heartbeat(r, 10)));
    }
    bytes.extend(masked(true, TEXT, &heartbeat("3", 50_000)));
    for r in ["4", "5"] {
        bytes.extend(masked(true, TEXT, &heartbeat(r, 10)));
    }
    ws.send_bytes(&bytes).unwrap();
    for r in ["1", "2", "3", "4", "5"] {
        expect_reply(&mut ws, r);
    }

    // A large frame that is cut off leaves the socket (and the server) as it was: the
    // rest arrives a moment later and the frame is read.
    let big = masked(true, TEXT, &heartbeat("late", 30_000));
    ws.send_bytes(&big[..20_000]).unwrap();
    expect_silence(&mut ws, "two thirds of a large frame");
    ws.send_bytes(&big[20_000..]).unwrap();
    expect_reply(&mut ws, "late");
    assert!(server.healthy());
}

#[test]
fn control_frames_between_fragments_are_answered_at_once() {
    let server = Server::start(&[]);
    let (_, token) = server.register("ada");
    let mut ws = live_socket(&server, &token);

    // A message in one-byte fragments, with a ping and an unsolicited pong in the middle:
    // the ping is answered before the message is complete, with its payload.
    let text = heartbeat("frag", 0);
    let (first, rest) = text.split_first().unwrap();
    ws.send_bytes(&masked(false, TEXT, std::slice::from_ref(first)))
        .unwrap();
    for (i, byte) in rest.iter().enumerate() {
        let last = i == rest.len() - 1;
        if i == 10 {
            ws.send_bytes(&masked(true, PING, b"are you there"))
                .unwrap();
            assert_eq!(
                ws.read(PATIENCE),
                Some(Got::Pong(b"are you there".to_vec()))
            );
            ws.send_bytes(&masked(true, PONG, b"unasked")).unwrap();
        }
        ws.send_bytes(&masked(last, CONTINUATION, std::slice::from_ref(byte)))
            .unwrap();
    }
    expect_reply(&mut ws, "frag");

    // A close between fragments ends the connection with the close handshake; the
    // unfinished message is dropped.
    let mut ws = live_socket(&server, &token);
    ws.send_bytes(&masked(false, TEXT, b"[null,\"x\","))
        .unwrap();
    ws.send_bytes(&masked(true, CLOSE, &1000u16.to_be_bytes()))
        .unwrap();
    assert_eq!(ws.read(PATIENCE), Some(Got::Close(Some(1000))));
    assert!(ws.hangs_up_within(PATIENCE));
    assert!(server.healthy());
}

#[test]
fn close_handshakes_in_both_directions() {
    let server = Server::start(&[]);
    let (_, token) = server.register("ada");

    // The client closes, with a code and reason or with nothing: the server answers with
    // a close frame and then ends the TCP connection itself. A frame sent after the close
    // is not read.
    for payload in [&b"\x03\xe8bye"[..], &b""[..], &b"\x0f\xa0app"[..]] {
        let mut ws = live_socket(&server, &token);
        let mut bytes = masked(true, CLOSE, payload);
        bytes.extend(masked(true, TEXT, &heartbeat("after", 0)));
        ws.send_bytes(&bytes).unwrap();
        assert_eq!(ws.read(PATIENCE), Some(Got::Close(Some(1000))));
        assert!(ws.hangs_up_within(PATIENCE), "{payload:?}");
    }
    sockets_drop_to_zero(&server);

    // The server closes (a binary frame is refused with 1003): its close frame is the
    // last thing it sends; the client answers, and the connection is gone.
    let mut ws = live_socket(&server, &token);
    ws.send_bytes(&masked(true, BINARY, &[1, 2, 3])).unwrap();
    assert_eq!(ws.read(PATIENCE), Some(Got::Close(Some(1003))));
    ws.send_bytes(&masked(true, CLOSE, &1003u16.to_be_bytes()))
        .unwrap();
    assert!(ws.hangs_up_within(PATIENCE));
    ws.stream.shutdown(std::net::Shutdown::Both).unwrap();
    sockets_drop_to_zero(&server);

    // A client that never answers the server's close and never closes its end: the
    // server lets the connection go after a short linger (2 s) rather than keep it.
    let files = server.open_files();
    let mut silent = live_socket(&server, &token);
    silent
        .send_bytes(&masked(true, BINARY, &[1, 2, 3]))
        .unwrap();
    assert_eq!(silent.read(PATIENCE), Some(Got::Close(Some(1003))));
    let took = sockets_drop_to_zero(&server);
    assert!(took < Duration::from_secs(4), "held for {took:?}");
    let start = Instant::now();
    while server.open_files() > files {
        assert!(start.elapsed() < PATIENCE, "its file is still open");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(silent);
    assert!(server.healthy());
}

#[test]
fn a_client_that_stops_reading_a_while_gets_every_frame_intact() {
    let _heavy = heavy();
    // Room for a few MB queued per client, and no rate limit in the way.
    let server = Server::start(&[
        ("STOA_REALTIME__OUTBOUND_QUEUE_BYTES", "16777216"),
        ("STOA_REALTIME__MAX_BROADCAST_BYTES", "65536"),
        ("STOA_REALTIME__MESSAGES_PER_SEC", "100000"),
        ("STOA_REALTIME__MESSAGE_BURST", "100000"),
        ("STOA_REALTIME__USER_MESSAGES_PER_SEC", "100000"),
        ("STOA_REALTIME__USER_MESSAGE_BURST", "100000"),
        ("STOA_REALTIME__TOPIC_BROADCASTS_PER_SEC", "100000"),
        ("STOA_REALTIME__TOPIC_BROADCAST_BYTES_PER_SEC", "1073741824"),
    ]);
    let (_, owner) = server.register("ada");
    let ws_id = server.workspace_with(&owner, &[]);
    let topic = format!("workspace:{ws_id}");

    // The reader joins, then reads nothing, with a small receive buffer: the server's
    // writes stall part-way through frames and resume where they stopped.
    // About 9 MB in all, more than the socket buffers hold.
    let size = |i: usize| 100 + i * 97 % 30_000;
    let mut reader = server.ws(&owner);
    reader.join(&topic, json!({}));
    socket2::SockRef::from(&reader.stream)
        .set_recv_buffer_size(65536)
        .unwrap();
    let mut sender = server.ws(&owner);
    let jr = sender.join(&topic, json!({}));
    const N: usize = 600;
    for i in 0..N {
        // Sizes that straddle every header form and split anywhere.
        let blob = char::from(b'a' + (i % 26) as u8)
            .to_string()
            .repeat(size(i));
        let r = sender.push(
            Some(&jr),
            &topic,
            "broadcast",
            json!({"i": i, "blob": blob}),
        );
        assert_eq!(sender.reply(&r)[4]["status"], "ok");
    }
    assert!(server.metric("stoa_ws_slow_consumers_total") == 0.0);

    let mut seen = 0;
    while seen < N {
        let v: Value = reader.next_json();
        if v[3] != "broadcast" {
            continue;
        }
        let i = seen;
        assert_eq!(v[4]["i"], i, "in order");
        let blob = v[4]["blob"].as_str().expect("blob");
        assert_eq!(blob.len(), size(i), "frame {i} whole");
        let c = char::from(b'a' + (i % 26) as u8);
        assert!(blob.chars().all(|x| x == c), "frame {i} intact");
        seen += 1;
    }
    let r = reader.push(None, "phoenix", "heartbeat", json!({}));
    assert_eq!(reader.reply(&r)[4]["status"], "ok");
    assert!(server.healthy());
}

/// A server where one user may open thousands of sockets, that user's token, and the
/// topic of a workspace of theirs.
fn crowd_server() -> (Server, String, String) {
    let server = Server::start(&[
        ("STOA_REALTIME__MAX_SOCKETS_PER_USER", "100000"),
        ("STOA_REALTIME__USER_MESSAGES_PER_SEC", "100000"),
        ("STOA_REALTIME__USER_MESSAGE_BURST", "100000"),
    ]);
    let (_, owner) = server.register("ada");
    let ws_id = server.workspace_with(&owner, &[]);
    (server, owner, format!("workspace:{ws_id}"))
}

#[test]
fn an_idle_joined_socket_costs_the_server_under_6_kib() {
    let _heavy = heavy();
    let (server, owner, topic) = crowd_server();
    // The first few hundred settle the allocator and the topic; the next 2,000 are measured.
    let mut open = server.joined_sockets(&owner, &topic, 300);
    let before = server.rss_kib();
    open.extend(server.joined_sockets(&owner, &topic, 2000));
    let per_socket = (server.rss_kib().saturating_sub(before)) * 1024 / 2000;
    eprintln!("{per_socket} bytes per joined idle socket");
    // No read buffer, no write queue, no HTTP codec or connection task: what is left is the
    // session, its subscription and the socket's task (about 5.3 KB in a release build,
    // 4.5 KB in a debug one; 7.4 KB with the HTTP connection's task kept, 15.4 KB with
    // actix-http's codec and its buffers).
    assert!(
        per_socket < 6144,
        "{per_socket} bytes per joined idle socket"
    );
    assert_eq!(server.metric("stoa_ws_connections"), 2300.0);
}

/// The listening socket's accept queue is as long as the kernel allows (up to 4096), not
/// the standard library's 128: a reconnect storm's SYNs are queued, not dropped (a dropped
/// SYN costs its client a one-second retransmission).
#[test]
fn the_accept_queue_is_as_long_as_the_kernel_allows() {
    let server = Server::start(&[]);
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(4096);
    let out = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{}", server.port)])
        .output()
        .expect("ss (iproute2) runs");
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    // State, Recv-Q, Send-Q (the backlog of a listening socket), …
    let backlog: u32 = line
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no listening socket in {line:?}"));
    assert_eq!(backlog, somaxconn.min(4096), "{line}");
}

/// When a crowd leaves, the memory its sockets held goes back to the system: the process
/// does not stay at its peak (glibc would keep it for reuse).
#[test]
fn memory_a_crowd_held_is_returned_when_it_leaves() {
    let _heavy = heavy();
    let (server, owner, topic) = crowd_server();
    let before = server.rss_kib();
    let mut crowd = server.joined_sockets(&owner, &topic, 3000);
    let peak = server.rss_kib();
    // The crowd held several megabytes (about 4.5 KB a socket in a debug build; the
    // allocator may reuse some of what was free before it came).
    assert!(peak > before + 6 * 1024, "{before} KiB then {peak} KiB");
    crowd.clear();
    let deadline = std::time::Instant::now() + PATIENCE;
    while server.metric("stoa_ws_sockets") > 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the sockets never closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Within a few of the 5-second checks, most of what the crowd added is gone again.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = server.rss_kib();
        if now < before + (peak - before) / 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "RSS {before} KiB idle, {peak} KiB with the crowd, still {now} KiB after it left"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
