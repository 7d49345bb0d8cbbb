//! Payloads: what a client may send on a channel, and the presence shapes Stoa sends back
//! (exactly as phoenix.js `Presence` reads them).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::frame::Frame;

/// `status` of a `phx_reply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplyStatus {
    Ok,
    Error,
}

/// A client message, by meaning.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// `[null, ref, "phoenix", "heartbeat", {}]`
    Heartbeat,
    /// `phx_join`; `since` asks for every event after that offset first.
    Join { since: Option<i64> },
    /// `phx_leave`
    Leave,
    /// `broadcast`: relayed to the topic's other subscribers, never stored.
    Broadcast(Map<String, Value>),
    /// `presence:update`: replaces this connection's presence meta.
    PresenceUpdate(Map<String, Value>),
    /// `access_token`: a fresh access token for a long-lived socket.
    AccessToken(String),
    /// Anything else; answered with an error reply.
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    #[error("since must be a non-negative integer")]
    BadSince,
    #[error("access_token needs a string field `token`")]
    BadToken,
    #[error("presence meta must not set fields starting with phx_")]
    ReservedMeta,
}

impl Inbound {
    pub fn from_frame(frame: &Frame) -> Result<Inbound, InboundError> {
        if frame.topic == crate::PHOENIX_TOPIC {
            return Ok(if frame.event == "heartbeat" {
                Inbound::Heartbeat
            } else {
                Inbound::Unknown(frame.event.clone())
            });
        }
        Ok(match frame.event.as_str() {
            "phx_join" => {
                let since = match frame.payload.get("since") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(
                        v.as_i64()
                            .filter(|n| *n >= 0)
                            .ok_or(InboundError::BadSince)?,
                    ),
                };
                Inbound::Join { since }
            }
            "phx_leave" => Inbound::Leave,
            "broadcast" => Inbound::Broadcast(frame.payload.clone()),
            "presence:update" => {
                if frame.payload.keys().any(|k| k.starts_with("phx_")) {
                    return Err(InboundError::ReservedMeta);
                }
                Inbound::PresenceUpdate(frame.payload.clone())
            }
            "access_token" => match frame.payload.get("token") {
                Some(Value::String(t)) => Inbound::AccessToken(t.clone()),
                _ => return Err(InboundError::BadToken),
            },
            other => Inbound::Unknown(other.to_string()),
        })
    }
}

/// One connection's presence: its `phx_ref` plus whatever the client set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceMeta {
    pub phx_ref: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phx_ref_prev: Option<String>,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// All metas of one key (Stoa: one user id).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PresenceEntry {
    pub metas: Vec<PresenceMeta>,
}

/// `presence_state`: key → metas.
pub type PresenceState = BTreeMap<String, PresenceEntry>;

/// `presence_diff`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PresenceDiff {
    pub joins: PresenceState,
    pub leaves: PresenceState,
}

impl PresenceDiff {
    pub fn is_empty(&self) -> bool {
        self.joins.is_empty() && self.leaves.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn frame(topic: &str, event: &str, payload: Value) -> Frame {
        Frame {
            join_ref: Some("1".into()),
            msg_ref: Some("2".into()),
            topic: topic.into(),
            event: event.into(),
            payload: payload.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn classifies_client_messages() {
        assert_eq!(
            Inbound::from_frame(&frame("phoenix", "heartbeat", json!({}))),
            Ok(Inbound::Heartbeat)
        );
        assert_eq!(
            Inbound::from_frame(&frame("workspace:1", "phx_join", json!({"since": 4}))),
            Ok(Inbound::Join { since: Some(4) })
        );
        assert_eq!(
            Inbound::from_frame(&frame("workspace:1", "phx_join", json!({}))),
            Ok(Inbound::Join { since: None })
        );
        assert_eq!(
            Inbound::from_frame(&frame("w:1", "phx_leave", json!({}))),
            Ok(Inbound::Leave)
        );
        assert_eq!(
            Inbound::from_frame(&frame("w:1", "access_token", json!({"token": "t"}))),
            Ok(Inbound::AccessToken("t".into()))
        );
        assert_eq!(
            Inbound::from_frame(&frame("w:1", "launch_missiles", json!({}))),
            Ok(Inbound::Unknown("launch_missiles".into()))
        );
    }

    #[test]
    fn refuses_bad_fields() {
        for since in [json!(-1), json!("3"), json!(1.5), json!([])] {
            assert_eq!(
                Inbound::from_frame(&frame("w:1", "phx_join", json!({"since": since}))),
                Err(InboundError::BadSince)
            );
        }
        assert_eq!(
            Inbound::from_frame(&frame("w:1", "access_token", json!({"token": 5}))),
            Err(InboundError::BadToken)
        );
        assert_eq!(
            Inbound::from_frame(&frame("w:1", "presence:update", json!({"phx_ref": "x"}))),
            Err(InboundError::ReservedMeta)
        );
    }

    #[test]
    fn presence_serialises_as_phoenix_js_expects() {
        let mut fields = Map::new();
        fields.insert("cursor".into(), json!(12));
        let mut state = PresenceState::new();
        state.insert(
            "7".into(),
            PresenceEntry {
                metas: vec![PresenceMeta {
                    phx_ref: "F1".into(),
                    phx_ref_prev: None,
                    fields,
                }],
            },
        );
        assert_eq!(
            serde_json::to_value(&state).unwrap(),
            json!({"7": {"metas": [{"phx_ref": "F1", "cursor": 12}]}})
        );
        let diff = PresenceDiff {
            joins: state.clone(),
            leaves: PresenceState::new(),
        };
        assert_eq!(
            serde_json::to_value(&diff).unwrap(),
            json!({"joins": {"7": {"metas": [{"phx_ref": "F1", "cursor": 12}]}}, "leaves": {}})
        );
    }
}
