//! A topic's presence changes within one batching window: numbered in order, so that each
//! subscriber is sent the diff of what it has not seen, and a meta that joined and left
//! within the window cancels out. And how long the window is.

use std::time::Duration;

use stoa_protocol::{PresenceDiff, PresenceMeta};

/// How much a topic's presence batching window grows per subscriber (500 ms at 5,000), and
/// the longest it gets.
const WINDOW_PER_SUBSCRIBER: Duration = Duration::from_micros(100);
const WINDOW_MAX: Duration = Duration::from_secs(1);

/// How long a topic with `subscribers` gathers presence changes before it sends them, from
/// `presence_batch` up: a window's diff is a frame to every subscriber, so a large topic
/// batches longer, and a crowd joining costs its subscribers a bounded number of frames per
/// second (1 / `WINDOW_PER_SUBSCRIBER` in all), not one per subscriber per window.
pub(super) fn window(presence_batch: Duration, subscribers: usize) -> Duration {
    let grown =
        WINDOW_PER_SUBSCRIBER.saturating_mul(u32::try_from(subscribers).unwrap_or(u32::MAX));
    presence_batch.max(grown).min(WINDOW_MAX)
}

struct Change {
    seq: u64,
    key: String,
    meta: PresenceMeta,
    join: bool,
}

/// The changes of the current window, each numbered; the numbers go on across windows.
#[derive(Default)]
pub(super) struct Changes {
    changes: Vec<Change>,
    seq: u64,
}

impl Changes {
    /// A meta joined (or left) under `key`.
    pub(super) fn record(&mut self, key: String, meta: PresenceMeta, join: bool) {
        self.seq += 1;
        self.changes.push(Change {
            seq: self.seq,
            key,
            meta,
            join,
        });
    }

    /// The number of the last change (of any window).
    pub(super) fn last(&self) -> u64 {
        self.seq
    }

    /// The number of the window's first change, if it has any.
    pub(super) fn first(&self) -> Option<u64> {
        self.changes.first().map(|c| c.seq)
    }

    /// The diff of the changes after `seen`: a meta that joined and left again within it
    /// cancels out (phoenix.js applies a diff's joins before its leaves).
    pub(super) fn diff_after(&self, seen: u64) -> PresenceDiff {
        let mut diff = PresenceDiff::default();
        for c in self.changes.iter().filter(|c| c.seq > seen) {
            if c.join {
                let entry = diff.joins.entry(c.key.clone()).or_default();
                entry.metas.push(c.meta.clone());
                continue;
            }
            let joined = diff.joins.get_mut(&c.key).and_then(|e| {
                let at = e.metas.iter().position(|m| m.phx_ref == c.meta.phx_ref)?;
                e.metas.remove(at);
                Some(e.metas.is_empty())
            });
            match joined {
                Some(true) => {
                    diff.joins.remove(&c.key);
                }
                Some(false) => {}
                None => {
                    let entry = diff.leaves.entry(c.key.clone()).or_default();
                    entry.metas.push(c.meta.clone());
                }
            }
        }
        diff
    }

    /// The window is sent: a new one begins (the numbering goes on).
    pub(super) fn clear(&mut self) {
        self.changes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(r: &str) -> PresenceMeta {
        PresenceMeta {
            phx_ref: r.into(),
            phx_ref_prev: None,
            fields: Default::default(),
        }
    }

    fn refs(state: &stoa_protocol::PresenceState, key: &str) -> Vec<String> {
        state
            .get(key)
            .map(|e| e.metas.iter().map(|m| m.phx_ref.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_meta_that_joins_and_leaves_within_the_window_cancels_out() {
        let mut c = Changes::default();
        c.record("1".into(), meta("a"), true);
        c.record("1".into(), meta("b"), true);
        c.record("1".into(), meta("a"), false);
        c.record("2".into(), meta("z"), false);
        let diff = c.diff_after(0);
        assert_eq!(refs(&diff.joins, "1"), ["b"]);
        assert!(!diff.leaves.contains_key("1"), "a never showed");
        assert_eq!(
            refs(&diff.leaves, "2"),
            ["z"],
            "a leave from before the window"
        );
        c.record("1".into(), meta("b"), false);
        assert!(c.diff_after(0).joins.is_empty());
    }

    #[test]
    fn each_subscriber_gets_what_it_has_not_seen() {
        let mut c = Changes::default();
        c.record("1".into(), meta("a"), true);
        let seen = c.last();
        c.record("2".into(), meta("b"), true);
        let diff = c.diff_after(seen);
        assert!(!diff.joins.contains_key("1"));
        assert_eq!(refs(&diff.joins, "2"), ["b"]);
        assert_eq!(c.first(), Some(1));
        c.clear();
        assert_eq!(c.first(), None);
        c.record("3".into(), meta("c"), true);
        assert_eq!(c.first(), Some(3), "numbers go on across windows");
        assert!(c.diff_after(c.last()).is_empty());
    }

    #[test]
    fn the_window_grows_with_the_subscribers_up_to_a_second() {
        let batch = Duration::from_millis(25);
        assert_eq!(window(batch, 0), batch);
        assert_eq!(
            window(batch, 100),
            batch,
            "10 ms of growth is under the batch"
        );
        assert_eq!(window(batch, 5_000), Duration::from_millis(500));
        assert_eq!(window(batch, 1_000_000), Duration::from_secs(1));
        assert_eq!(window(Duration::ZERO, 1_000), Duration::from_millis(100));
    }
}
