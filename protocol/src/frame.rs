//! The Phoenix Channels V2 JSON frame: `[join_ref, ref, topic, event, payload]`.

use serde_json::{Map, Value};

/// Longest `join_ref`/`ref` accepted (the stock client sends small decimal counters).
pub const MAX_REF_LEN: usize = 64;
/// Longest topic accepted.
pub const MAX_TOPIC_LEN: usize = 256;
/// Longest event name accepted.
pub const MAX_EVENT_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub join_ref: Option<String>,
    pub msg_ref: Option<String>,
    pub topic: String,
    pub event: String,
    pub payload: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("frame is not valid JSON")]
    NotJson,
    #[error("frame must be a JSON array [join_ref, ref, topic, event, payload]")]
    NotAFrame,
    #[error("join_ref and ref must be strings (at most 64 characters) or null")]
    BadRef,
    #[error("topic must be a non-empty string of at most 256 characters")]
    BadTopic,
    #[error("event must be a non-empty string of at most 64 characters")]
    BadEvent,
    #[error("payload must be a JSON object")]
    BadPayload,
}

fn reference(v: Value) -> Result<Option<String>, FrameError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.len() <= MAX_REF_LEN => Ok(Some(s)),
        _ => Err(FrameError::BadRef),
    }
}

impl Frame {
    /// Decodes a text frame, refusing anything over `max_len` bytes before parsing it.
    pub fn decode(text: &str, max_len: usize) -> Result<Frame, FrameError> {
        if text.len() > max_len {
            return Err(FrameError::TooLarge {
                size: text.len(),
                limit: max_len,
            });
        }
        let value: Value = serde_json::from_str(text).map_err(|_| FrameError::NotJson)?;
        let Value::Array(items) = value else {
            return Err(FrameError::NotAFrame);
        };
        let Ok::<[Value; 5], _>([join_ref, msg_ref, topic, event, payload]) = items.try_into()
        else {
            return Err(FrameError::NotAFrame);
        };
        let topic = match topic {
            Value::String(s) if !s.is_empty() && s.len() <= MAX_TOPIC_LEN => s,
            _ => return Err(FrameError::BadTopic),
        };
        let event = match event {
            Value::String(s) if !s.is_empty() && s.len() <= MAX_EVENT_LEN => s,
            _ => return Err(FrameError::BadEvent),
        };
        let Value::Object(payload) = payload else {
            return Err(FrameError::BadPayload);
        };
        Ok(Frame {
            join_ref: reference(join_ref)?,
            msg_ref: reference(msg_ref)?,
            topic,
            event,
            payload,
        })
    }

    /// The frame as JSON text.
    pub fn encode(&self) -> String {
        encode_parts(
            self.join_ref.as_deref(),
            self.msg_ref.as_deref(),
            &self.topic,
            &self.event,
            &self.payload,
        )
    }
}

/// Encodes a frame from borrowed parts (no intermediate `Frame`).
pub fn encode_parts(
    join_ref: Option<&str>,
    msg_ref: Option<&str>,
    topic: &str,
    event: &str,
    payload: &impl serde::Serialize,
) -> String {
    serde_json::to_string(&(join_ref, msg_ref, topic, event, payload))
        .unwrap_or_else(|_| String::from("[null,null,\"phoenix\",\"phx_error\",{}]"))
}

/// A reply to a client message: `phx_reply` with the message's refs.
pub fn encode_reply(
    join_ref: Option<&str>,
    msg_ref: Option<&str>,
    topic: &str,
    status: crate::ReplyStatus,
    response: &impl serde::Serialize,
) -> String {
    #[derive(serde::Serialize)]
    struct Reply<'a, R> {
        status: crate::ReplyStatus,
        response: &'a R,
    }
    encode_parts(
        join_ref,
        msg_ref,
        topic,
        "phx_reply",
        &Reply { status, response },
    )
}

/// A server push to many subscribers of one topic, encoded once. Only the `join_ref`
/// differs between subscribers, so the rest of the frame is kept as text and each
/// subscriber's frame is one small concatenation.
#[derive(Debug, Clone)]
pub struct Push {
    /// `,null,"topic","event",{payload}]`
    tail: std::sync::Arc<str>,
}

impl Push {
    pub fn new(topic: &str, event: &str, payload: &impl serde::Serialize) -> Push {
        let full = encode_parts(None, None, topic, event, payload);
        // `full` starts with `[null`; keep everything after it.
        let tail = full.strip_prefix("[null").unwrap_or(&full).to_string();
        Push { tail: tail.into() }
    }

    /// What precedes the tail in the frames of a subscriber joined with `join_ref`: `[` and
    /// the ref as JSON. Computed once per join.
    pub fn head(join_ref: Option<&str>) -> String {
        let jr = serde_json::to_string(&join_ref).unwrap_or_else(|_| "null".into());
        format!("[{jr}")
    }

    /// Everything after the join_ref, shared by every subscriber.
    pub fn tail(&self) -> &std::sync::Arc<str> {
        &self.tail
    }

    /// The whole frame for a subscriber joined with `join_ref`.
    pub fn render(&self, join_ref: Option<&str>) -> String {
        let mut out = Push::head(join_ref);
        out.push_str(&self.tail);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMIT: usize = 64 * 1024;

    #[test]
    fn decodes_what_phoenix_js_sends() {
        let f = Frame::decode(r#"["3","4","workspace:1","phx_join",{"since":7}]"#, LIMIT).unwrap();
        assert_eq!(f.join_ref.as_deref(), Some("3"));
        assert_eq!(f.msg_ref.as_deref(), Some("4"));
        assert_eq!(f.topic, "workspace:1");
        assert_eq!(f.event, "phx_join");
        assert_eq!(f.payload["since"], 7);
        let hb = Frame::decode(r#"[null,"5","phoenix","heartbeat",{}]"#, LIMIT).unwrap();
        assert_eq!(hb.join_ref, None);
    }

    #[test]
    fn round_trips() {
        let f = Frame {
            join_ref: Some("1".into()),
            msg_ref: None,
            topic: "document:9".into(),
            event: "presence_diff".into(),
            payload: json!({"joins": {}, "leaves": {"7": {"metas": []}}})
                .as_object()
                .unwrap()
                .clone(),
        };
        assert_eq!(Frame::decode(&f.encode(), LIMIT).unwrap(), f);
    }

    #[test]
    fn rejects_malformed_frames() {
        let cases: &[(&str, FrameError)] = &[
            ("", FrameError::NotJson),
            ("[", FrameError::NotJson),
            ("{}", FrameError::NotAFrame),
            ("[1,2,3,4]", FrameError::NotAFrame),
            (r#"[null,null,"t","e",{},6]"#, FrameError::NotAFrame),
            (r#"[1,"2","t","e",{}]"#, FrameError::BadRef),
            (r#"[null,{},"t","e",{}]"#, FrameError::BadRef),
            (r#"[null,null,"","e",{}]"#, FrameError::BadTopic),
            (r#"[null,null,5,"e",{}]"#, FrameError::BadTopic),
            (r#"[null,null,"t","",{}]"#, FrameError::BadEvent),
            (r#"[null,null,"t","e",[]]"#, FrameError::BadPayload),
            (r#"[null,null,"t","e","x"]"#, FrameError::BadPayload),
        ];
        for (text, err) in cases {
            assert_eq!(Frame::decode(text, LIMIT).unwrap_err(), *err, "{text}");
        }
        let long_ref = format!(r#"["{}",null,"t","e",{{}}]"#, "1".repeat(65));
        assert_eq!(
            Frame::decode(&long_ref, LIMIT).unwrap_err(),
            FrameError::BadRef
        );
    }

    #[test]
    fn refuses_oversized_frames_before_parsing() {
        let big = format!(r#"[null,null,"t","e",{{"x":"{}"}}]"#, "a".repeat(100));
        assert_eq!(
            Frame::decode(&big, 50).unwrap_err(),
            FrameError::TooLarge {
                size: big.len(),
                limit: 50
            }
        );
    }

    #[test]
    fn never_panics_on_arbitrary_input() {
        // A cheap deterministic fuzz: every prefix and many mutations of valid frames.
        let seeds = [
            r#"["1","2","workspace:1","phx_join",{"since":3,"x":[1,{"y":null}]}]"#,
            r#"[null,"9","phoenix","heartbeat",{}]"#,
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for seed in seeds {
            for end in 0..=seed.len() {
                if let Some(prefix) = seed.get(..end) {
                    let _ = Frame::decode(prefix, LIMIT);
                }
            }
            let bytes = seed.as_bytes();
            for _ in 0..5000 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let mut m = bytes.to_vec();
                let i = (state as usize) % m.len();
                m[i] = (state >> 32) as u8;
                if let Ok(text) = std::str::from_utf8(&m) {
                    let _ = Frame::decode(text, LIMIT);
                }
            }
        }
    }

    #[test]
    fn pushes_are_encoded_once_and_rendered_per_subscriber() {
        let push = Push::new("workspace:1", "event", &json!({"offset": 5}));
        assert_eq!(
            push.render(Some("12")),
            r#"["12",null,"workspace:1","event",{"offset":5}]"#
        );
        assert_eq!(
            push.render(None),
            r#"[null,null,"workspace:1","event",{"offset":5}]"#
        );
        let odd = push.render(Some("a\"b"));
        let f = Frame::decode(&odd, LIMIT).unwrap();
        assert_eq!(f.join_ref.as_deref(), Some("a\"b"));
    }

    #[test]
    fn replies_carry_status_and_response() {
        let r = encode_reply(
            Some("1"),
            Some("2"),
            "phoenix",
            crate::ReplyStatus::Ok,
            &json!({}),
        );
        assert_eq!(
            r,
            r#"["1","2","phoenix","phx_reply",{"status":"ok","response":{}}]"#
        );
    }
}
