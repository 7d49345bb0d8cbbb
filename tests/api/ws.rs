//! A small Phoenix Channels client over a real WebSocket, for tests. Frames that arrive
//! while waiting for something else are kept, so assertions can look for them later.

use std::collections::VecDeque;
use std::time::Duration;

use actix_codec::Framed;
use awc::ws::{CloseReason, Codec, Frame, Message};
use awc::BoxedSocket;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

use crate::helpers::TestApp;

/// Upper bound for anything a test waits for; reaching it fails the test.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// One decoded server frame.
#[derive(Debug, Clone)]
pub struct Msg {
    pub join_ref: Option<String>,
    pub msg_ref: Option<String>,
    pub topic: String,
    pub event: String,
    pub payload: Value,
}

pub struct Ws {
    framed: Framed<BoxedSocket, Codec>,
    next_ref: u64,
    pub inbox: VecDeque<Msg>,
    /// Payloads of the pongs received, in order.
    pub pongs: Vec<Vec<u8>>,
    pub closed: Option<Option<CloseReason>>,
}

impl Ws {
    pub async fn connect(app: &TestApp, token: &str) -> Ws {
        Self::try_connect(
            app,
            &format!("/socket/websocket?vsn=2.0.0&token={token}"),
            &[],
        )
        .await
        .expect("socket opens")
    }

    /// Opens a socket at `path`; the HTTP status if the upgrade is refused.
    pub async fn try_connect(
        app: &TestApp,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Ws, u16> {
        let url = app.url(path).replacen("http://", "ws://", 1);
        let mut req = awc::Client::new().ws(url).max_frame_size(16 << 20);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        match req.connect().await {
            Ok((_, framed)) => Ok(Ws {
                framed,
                next_ref: 0,
                inbox: VecDeque::new(),
                pongs: Vec::new(),
                closed: None,
            }),
            Err(awc::error::WsClientError::InvalidResponseStatus(s)) => Err(s.as_u16()),
            Err(e) => panic!("websocket connect failed: {e}"),
        }
    }

    /// The problem an upgrade at `path` is refused with: its status and its `code`.
    pub async fn refusal(app: &TestApp, path: &str) -> (u16, String) {
        let res = app
            .call(
                awc::http::Method::GET,
                path,
                None,
                None,
                &[
                    ("connection", "Upgrade"),
                    ("upgrade", "websocket"),
                    ("sec-websocket-version", "13"),
                    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ],
            )
            .await;
        assert_ne!(res.status, 101, "the upgrade was accepted");
        let code = res.body["code"].as_str().unwrap_or_default().to_string();
        (res.status, code)
    }

    pub async fn send_text(&mut self, text: String) {
        self.send_raw(Message::Text(text.into())).await;
    }

    /// Sends any WebSocket message (fragments, pings, binary).
    pub async fn send_raw(&mut self, msg: Message) {
        self.framed.send(msg).await.expect("frame sent");
    }

    /// Sends `[join_ref, ref, topic, event, payload]`; returns the ref.
    pub async fn push(
        &mut self,
        join_ref: Option<&str>,
        topic: &str,
        event: &str,
        payload: Value,
    ) -> String {
        self.next_ref += 1;
        let r = self.next_ref.to_string();
        let frame = json!([join_ref, r, topic, event, payload]).to_string();
        self.send_text(frame).await;
        r
    }

    /// The next frame from the server, or `None` once the socket closed.
    async fn read(&mut self) -> Option<Msg> {
        if self.closed.is_some() {
            return None;
        }
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.framed.next())
                .await
                .expect("server frame within patience");
            match frame {
                Some(Ok(Frame::Text(bytes))) => {
                    let v: Value = serde_json::from_slice(&bytes).expect("server sends JSON");
                    let a = v.as_array().expect("server sends arrays");
                    assert_eq!(a.len(), 5, "five-element frame: {v}");
                    return Some(Msg {
                        join_ref: a[0].as_str().map(str::to_string),
                        msg_ref: a[1].as_str().map(str::to_string),
                        topic: a[2].as_str().expect("topic").into(),
                        event: a[3].as_str().expect("event").into(),
                        payload: a[4].clone(),
                    });
                }
                Some(Ok(Frame::Close(reason))) => {
                    self.closed = Some(reason);
                    return None;
                }
                Some(Ok(Frame::Ping(p))) => {
                    let _ = self.framed.send(Message::Pong(p)).await;
                }
                Some(Ok(Frame::Pong(p))) => self.pongs.push(p.to_vec()),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    self.closed = Some(None);
                    return None;
                }
            }
        }
    }

    /// Waits for the first frame (kept or new) matching `pred`, removing it.
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Msg) -> bool) -> Msg {
        if let Some(i) = self.inbox.iter().position(&pred) {
            return self.inbox.remove(i).expect("index valid");
        }
        loop {
            match self.read().await {
                Some(m) if pred(&m) => return m,
                Some(m) => self.inbox.push_back(m),
                None => panic!(
                    "socket closed while waiting for {what}; kept: {:?}",
                    self.inbox
                ),
            }
        }
    }

    /// The reply to the message with ref `r`.
    pub async fn reply(&mut self, r: &str) -> Msg {
        self.expect(&format!("reply to {r}"), |m| {
            m.event == "phx_reply" && m.msg_ref.as_deref() == Some(r)
        })
        .await
    }

    /// Sends `event` on `topic` once with each payload, all at once, then reads every reply:
    /// their payloads (`status`, `response`), in the order sent.
    pub async fn push_all(
        &mut self,
        join_ref: &str,
        topic: &str,
        event: &str,
        payloads: impl IntoIterator<Item = Value>,
    ) -> Vec<Value> {
        let mut refs = Vec::new();
        for payload in payloads {
            refs.push(self.push(Some(join_ref), topic, event, payload).await);
        }
        let mut replies = Vec::new();
        for r in refs {
            replies.push(self.reply(&r).await.payload);
        }
        replies
    }

    /// Joins a topic; returns the reply's status and response.
    pub async fn join(&mut self, topic: &str, payload: Value) -> (String, Value) {
        self.next_ref += 1;
        let r = self.next_ref.to_string();
        let frame = json!([r, r, topic, "phx_join", payload]).to_string();
        self.send_text(frame).await;
        let reply = self.reply(&r).await;
        (
            reply.payload["status"].as_str().unwrap_or_default().into(),
            reply.payload["response"].clone(),
        )
    }

    /// Joins and asserts success; returns the join ref and the response.
    pub async fn join_ok(&mut self, topic: &str, payload: Value) -> (String, Value) {
        let (status, response) = self.join(topic, payload).await;
        assert_eq!(status, "ok", "join {topic}: {response}");
        (self.next_ref.to_string(), response)
    }

    /// The next push of `event` on `topic`.
    pub async fn next(&mut self, topic: &str, event: &str) -> Msg {
        self.expect(&format!("{event} on {topic}"), |m| {
            m.topic == topic && m.event == event
        })
        .await
    }

    /// Reads until the server closes the socket; returns its close reason.
    pub async fn until_closed(&mut self) -> Option<CloseReason> {
        while let Some(m) = self.read().await {
            self.inbox.push_back(m);
        }
        self.closed.clone().flatten()
    }

    /// Sends a heartbeat and waits for its reply: everything sent before it has been handled.
    pub async fn sync(&mut self) {
        let r = self.push(None, "phoenix", "heartbeat", json!({})).await;
        let reply = self.reply(&r).await;
        assert_eq!(reply.payload["status"], "ok");
    }

    /// Event offsets received on `topic` (kept frames first), in arrival order.
    pub fn offsets(&self, topic: &str) -> Vec<i64> {
        self.inbox
            .iter()
            .filter(|m| m.topic == topic && m.event == "event")
            .filter_map(|m| m.payload["offset"].as_i64())
            .collect()
    }

    pub async fn close(mut self) {
        let _ = self.framed.send(Message::Close(None)).await;
    }

    /// Closes the socket and waits for the server's answering close frame.
    pub async fn close_and_wait(mut self) {
        let _ = self.framed.send(Message::Close(None)).await;
        self.until_closed().await;
    }
}

/// How many of `replies` refused with `reason`.
pub fn refused(replies: &[Value], reason: &str) -> usize {
    replies
        .iter()
        .filter(|r| r["status"] == "error" && r["response"]["reason"] == reason)
        .count()
}
