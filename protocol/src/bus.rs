//! What nodes of a cluster tell each other over the bus, and how it is written.
//!
//! Every message is one JSON object: `{"v":1,"node":"<sender>","k":"<kind>",…}`. `v` is the
//! format: it changes only if a message could no longer be read the old way, and a node
//! drops messages of another `v`. Within a format, new kinds and new fields may be added: a
//! node ignores kinds it does not know (`Body::Unknown`) and fields it does not know, so a
//! node of the next release and one of this release can share a cluster.
//!
//! On the bus each message is sealed with the cluster's key ([`ClusterKey`]): a marker
//! byte, an HMAC-SHA256 over the channel's name and the JSON, then the JSON. A node drops
//! (and counts) a message whose seal does not hold, or that is more than a minute old: a
//! client of the Redis server that is not a node cannot forge notifications, revocations,
//! broadcasts or Yjs updates.
//!
//! Channels (the bus carries a channel name with each message):
//! - `stoa:e:{workspace}` — the workspace's events (all its topics need them, for offsets);
//! - `stoa:t:{topic}` — one topic's broadcasts and presence;
//! - `stoa:y:{document}` — one document's Yjs updates and awareness;
//! - `stoa:ctl` — nodes' heartbeats and departures, and revocations (rare, and they must
//!   reach every topic of a workspace on every node).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::payload::PresenceMeta;
use crate::Topic;

/// The format this release writes and reads.
pub const VERSION: u32 = 1;

/// The channel every node always listens on.
pub const CONTROL_CHANNEL: &str = "stoa:ctl";

/// The channel only `node` hears (relays to it).
pub fn node_channel(node: &str) -> String {
    format!("{CONTROL_CHANNEL}:n:{node}")
}

/// The channel of a workspace's events.
pub fn event_channel(workspace: i64) -> String {
    format!("stoa:e:{workspace}")
}

/// The channel of one document's Yjs updates and awareness.
pub fn doc_channel(document: i64) -> String {
    format!("stoa:y:{document}")
}

/// The channel of one topic's broadcasts and presence.
pub fn topic_channel(topic: Topic) -> String {
    format!("stoa:t:{topic}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    /// The sending node.
    pub node: String,
    /// When it was sent, in microseconds since the Unix epoch (for the bus lag metric;
    /// meaningful as far as the nodes' clocks agree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
    #[serde(flatten)]
    pub body: Body,
}

/// One presence meta held by some node, under its presence key (the user id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyedMeta {
    pub key: String,
    pub meta: PresenceMeta,
}

/// What a revocation takes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum Revocation {
    /// One user's membership of a workspace.
    Member { workspace: i64, user: i64 },
    /// A whole workspace (deleted).
    Workspace { workspace: i64 },
    /// A document (deleted).
    Document { document: i64 },
}

/// The end of one login's session (`session`, the `sid` its access tokens carry), or of
/// every token of `user` issued at or before `before_ms` except those of `except`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEnd {
    /// Its id in the database's record of session ends (nodes read what they missed by it).
    pub id: i64,
    pub user: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub except: Option<String>,
    /// Why: `logged_out`, `password_changed`, `account_disabled`, `refresh_token_reused`.
    pub reason: String,
}

impl SessionEnd {
    /// Whether a token of `user` from login `session`, issued at `issued_at_ms`
    /// (milliseconds since the Unix epoch), is one this ends.
    pub fn covers(&self, user: i64, session: Option<&str>, issued_at_ms: i64) -> bool {
        if user != self.user {
            return false;
        }
        if let Some(ended) = &self.session {
            return session == Some(ended.as_str());
        }
        let Some(before) = self.before_ms else {
            return false;
        };
        let kept = self.except.is_some() && session == self.except.as_deref();
        !kept && issued_at_ms <= before
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Body {
    /// A committed event of a workspace's log.
    Event {
        workspace: i64,
        offset: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        document: Option<i64>,
        payload: Value,
    },
    /// A client's broadcast on a topic (to every subscriber on the receiving node), or a
    /// server-side publish, which names its own `event` (absent: `broadcast`).
    Broadcast {
        topic: String,
        payload: Map<String, Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<String>,
    },
    /// Presence changes of the sender's connections on a topic.
    Presence {
        topic: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        joins: Vec<KeyedMeta>,
        /// `phx_ref`s of metas that left.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        leaves: Vec<String>,
    },
    /// Every meta the sender holds on a topic: replaces what others know of it.
    PresenceSnapshot {
        topic: String,
        metas: Vec<KeyedMeta>,
    },
    /// Asks every node holding the topic for its snapshot (a node just started hearing it).
    PresenceRequest {
        topic: String,
    },
    /// A notification for a user's `user:{id}` topic.
    Notify {
        user: i64,
        payload: Value,
    },
    Revoke {
        what: Revocation,
        reason: String,
    },
    /// Sessions ended before their access tokens expire (logout, password change, a
    /// disabled account): every node refuses the tokens it names and closes their sockets.
    SessionEnded(SessionEnd),
    /// A member's role in a workspace changed: whether their live documents may write.
    RoleChanged {
        workspace: i64,
        user: i64,
        writable: bool,
    },
    /// The sender is alive; `expiry_ms` is how long the others should wait for the next.
    Heartbeat {
        expiry_ms: u64,
        /// Changes each time the node starts: a node restarted under the same id before
        /// it expired has its earlier presences forgotten.
        #[serde(default)]
        incarnation: u64,
        /// The sender's load as it sends: channel sessions, Yjs connections and documents
        /// open (the cluster page shows them; older nodes send none).
        #[serde(default)]
        load: NodeLoad,
    },
    /// The sender is shutting down: its presences leave now.
    Leaving,
    /// Yjs updates of a document, written to the database by the sender before it sent
    /// them (base64, standard alphabet).
    YjsUpdates {
        document: i64,
        updates: Vec<String>,
    },
    /// An awareness update of a document from one of the sender's clients (base64).
    YjsAwareness {
        document: i64,
        update: String,
    },
    /// For one node only, on its own channel ([`node_channel`]): a request forwarded to the
    /// node that holds what it is about, or the answer to one (LongPoll sessions). What
    /// `payload` says is the business of whoever registered to hear relays.
    Relay {
        to: String,
        payload: Value,
    },
    /// A kind this release does not know (from a newer node): ignored.
    #[serde(other)]
    Unknown,
}

impl Envelope {
    pub fn new(node: &str, body: Body) -> Envelope {
        Envelope {
            v: VERSION,
            node: node.to_string(),
            at: None,
            body,
        }
    }

    /// The same, stamped with its sending time.
    pub fn at(mut self, micros: u64) -> Envelope {
        self.at = Some(micros);
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A message of this format, or `None` (another format, or not one at all).
    pub fn decode(bytes: &[u8]) -> Option<Envelope> {
        #[derive(Deserialize)]
        struct Version {
            v: u32,
        }
        let version: Version = serde_json::from_slice(bytes).ok()?;
        if version.v != VERSION {
            return None;
        }
        serde_json::from_slice(bytes).ok()
    }
}

/// The first byte of a sealed message (a JSON message starts with `{`).
const SEALED: u8 = 0x01;
/// Bytes of the seal.
const MAC_LEN: usize = 32;
/// How old a sealed message may be when it arrives (by its sender's clock), in
/// microseconds: beyond, it is a replay, or a message held up so long that the event log
/// and presence resync have long made up for it.
pub const MAX_AGE_US: u64 = 60_000_000;

/// The key that seals the nodes' messages to each other, derived from a secret every node
/// of a cluster shares.
#[derive(Clone)]
pub struct ClusterKey(hmac::Hmac<sha2::Sha256>);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(…)")
    }
}

/// Why a message from the bus was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsealed {
    /// Not sealed, or sealed with another key, for another channel, or changed since.
    Forged,
    /// Sealed, but older than [`MAX_AGE_US`].
    Stale,
    /// Not a message of this format.
    Unreadable,
}

impl ClusterKey {
    /// The key derived from `secret` (the nodes' shared secret): never the secret itself,
    /// so that a key seen on the bus tells nothing about the tokens the secret signs.
    pub fn derive(secret: &[u8]) -> ClusterKey {
        use hmac::Mac;
        let mut kdf = <hmac::Hmac<sha2::Sha256>>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        kdf.update(b"stoa cluster bus key v1");
        let key = kdf.finalize().into_bytes();
        ClusterKey(
            <hmac::Hmac<sha2::Sha256>>::new_from_slice(&key)
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length")),
        )
    }

    fn mac(&self, channel: &str, json: &[u8]) -> hmac::Hmac<sha2::Sha256> {
        use hmac::Mac;
        let mut mac = self.0.clone();
        mac.update(channel.as_bytes());
        mac.update(&[0]);
        mac.update(json);
        mac
    }

    /// `envelope` sealed for `channel`.
    pub fn seal(&self, channel: &str, envelope: &Envelope) -> Vec<u8> {
        use hmac::Mac;
        let json = envelope.encode();
        let tag = self.mac(channel, &json).finalize().into_bytes();
        let mut out = Vec::with_capacity(1 + MAC_LEN + json.len());
        out.push(SEALED);
        out.extend_from_slice(&tag);
        out.extend_from_slice(&json);
        out
    }

    /// The envelope of a message heard on `channel`, if its seal holds and it is fresh at
    /// `now_us` (microseconds since the Unix epoch).
    pub fn open(&self, channel: &str, message: &[u8], now_us: u64) -> Result<Envelope, Unsealed> {
        use hmac::Mac;
        let Some((&SEALED, rest)) = message.split_first() else {
            return Err(Unsealed::Forged);
        };
        if rest.len() < MAC_LEN {
            return Err(Unsealed::Forged);
        }
        let (tag, json) = rest.split_at(MAC_LEN);
        // Constant-time comparison.
        self.mac(channel, json)
            .verify_slice(tag)
            .map_err(|_| Unsealed::Forged)?;
        let envelope = Envelope::decode(json).ok_or(Unsealed::Unreadable)?;
        match envelope.at {
            Some(at) if now_us.saturating_sub(at) <= MAX_AGE_US => Ok(envelope),
            _ => Err(Unsealed::Stale),
        }
    }
}

/// What a node carries, as its heartbeat says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLoad {
    /// Phoenix channel sessions.
    #[serde(default)]
    pub sessions: u64,
    /// y-websocket connections.
    #[serde(default)]
    pub yjs_connections: u64,
    /// Documents loaded by their actor.
    #[serde(default)]
    pub documents: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_message_opens_only_with_its_key_on_its_channel_while_fresh() {
        let key = ClusterKey::derive(b"the nodes' shared secret");
        let now = 1_700_000_000_000_000;
        let envelope = Envelope::new(
            "n1",
            Body::Notify {
                user: 7,
                payload: serde_json::json!({"kind": "mention"}),
            },
        )
        .at(now);
        let sealed = key.seal("stoa:ctl", &envelope);
        assert_eq!(key.open("stoa:ctl", &sealed, now + 5), Ok(envelope.clone()));
        // Another channel, another key, a changed byte, no seal at all: forged.
        assert_eq!(
            key.open("stoa:t:user:7", &sealed, now),
            Err(Unsealed::Forged)
        );
        let other = ClusterKey::derive(b"another secret");
        assert_eq!(other.open("stoa:ctl", &sealed, now), Err(Unsealed::Forged));
        for i in [1, 20, sealed.len() - 1] {
            let mut changed = sealed.clone();
            changed[i] ^= 1;
            assert_eq!(
                key.open("stoa:ctl", &changed, now),
                Err(Unsealed::Forged),
                "{i}"
            );
        }
        assert_eq!(
            key.open("stoa:ctl", &envelope.encode(), now),
            Err(Unsealed::Forged)
        );
        assert_eq!(key.open("stoa:ctl", &[], now), Err(Unsealed::Forged));
        assert_eq!(
            key.open("stoa:ctl", &[SEALED, 1, 2], now),
            Err(Unsealed::Forged)
        );
        // Replayed after a minute: stale.
        assert_eq!(
            key.open("stoa:ctl", &sealed, now + MAX_AGE_US + 1),
            Err(Unsealed::Stale)
        );
        // Unstamped messages are never fresh.
        let unstamped = key.seal("stoa:ctl", &Envelope::new("n1", Body::Leaving));
        assert_eq!(key.open("stoa:ctl", &unstamped, now), Err(Unsealed::Stale));
    }

    #[test]
    fn a_session_end_covers_its_login_or_the_tokens_before_it_but_the_kept_one() {
        let logout = SessionEnd {
            id: 1,
            user: 7,
            session: Some("fam".into()),
            before_ms: None,
            except: None,
            reason: "logged_out".into(),
        };
        assert!(logout.covers(7, Some("fam"), 100_000));
        assert!(!logout.covers(7, Some("other"), 100_000));
        assert!(!logout.covers(7, None, 100_000));
        assert!(!logout.covers(8, Some("fam"), 100_000));
        let password = SessionEnd {
            id: 2,
            user: 7,
            session: None,
            before_ms: Some(100_500),
            except: Some("kept".into()),
            reason: "password_changed".into(),
        };
        assert!(password.covers(7, Some("fam"), 100_500));
        assert!(password.covers(7, None, 99_000));
        assert!(!password.covers(7, Some("kept"), 100_000));
        assert!(!password.covers(7, Some("fam"), 100_501), "issued after it");
        let disabled = SessionEnd {
            except: None,
            reason: "account_disabled".into(),
            ..password.clone()
        };
        assert!(disabled.covers(7, Some("kept"), 100_000));
        let wire = Envelope::new("n1", Body::SessionEnded(disabled.clone())).encode();
        assert_eq!(
            Envelope::decode(&wire).map(|e| e.body),
            Some(Body::SessionEnded(disabled))
        );
    }
    use serde_json::json;

    #[test]
    fn messages_round_trip_compactly() {
        let m = Envelope::new(
            "n1",
            Body::Event {
                workspace: 4,
                offset: 9,
                document: None,
                payload: json!({"offset": 9}),
            },
        );
        let bytes = m.encode();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"v":1,"node":"n1","k":"event","workspace":4,"offset":9,"payload":{"offset":9}}"#
        );
        assert_eq!(Envelope::decode(&bytes), Some(m));
        let revoke = Envelope::new(
            "n2",
            Body::Revoke {
                what: Revocation::Member {
                    workspace: 1,
                    user: 2,
                },
                reason: "membership_revoked".into(),
            },
        );
        assert_eq!(Envelope::decode(&revoke.encode()), Some(revoke));
    }

    #[test]
    fn a_newer_node_is_understood_as_far_as_this_one_can() {
        // A kind this release does not know, and a field it does not know.
        let newer = br#"{"v":1,"node":"n9","k":"teleport","to":"mars"}"#;
        assert_eq!(Envelope::decode(newer).unwrap().body, Body::Unknown);
        let extra = br#"{"v":1,"node":"n9","k":"leaving","why":"upgrade"}"#;
        assert_eq!(Envelope::decode(extra).unwrap().body, Body::Leaving);
        // Another format, or garbage, is dropped.
        assert!(Envelope::decode(br#"{"v":2,"node":"n9","k":"leaving"}"#).is_none());
        assert!(Envelope::decode(b"\xff\x00").is_none());
        assert!(Envelope::decode(br#"{"v":1,"node":"n9","k":"event"}"#).is_none());
    }
}
