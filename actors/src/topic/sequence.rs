//! A topic's events in offset order: each offset once, whatever order (or how many times)
//! the live stream and the log bring them, with the most recent kept for joins that catch
//! up.

use std::collections::{BTreeMap, VecDeque};

use crate::ports::LiveEvent;

/// Events kept in memory for subscribers catching up.
pub(super) const RECENT: usize = 512;

/// The events a topic has put in order, and those that wait for a gap to close.
#[derive(Default)]
pub(super) struct Sequence {
    /// The offset of the last event put in order.
    head: i64,
    /// Arrived after a gap: they wait for the events before them.
    pending: BTreeMap<i64, LiveEvent>,
    /// The last [`RECENT`] events put in order, oldest first.
    recent: VecDeque<LiveEvent>,
}

impl Sequence {
    /// Starts after `head` (the log's last offset when the topic starts).
    pub(super) fn start_at(&mut self, head: i64) {
        self.head = head;
    }

    pub(super) fn head(&self) -> i64 {
        self.head
    }

    /// Takes an event from the live stream or the log (one at or below the head, or already
    /// waiting, is dropped); [`Sequence::next_ready`] then gives the events now in order.
    pub(super) fn offer(&mut self, ev: LiveEvent) {
        if ev.offset > self.head {
            self.pending.entry(ev.offset).or_insert(ev);
        }
    }

    /// The next event in order, if it has arrived; each is given once.
    pub(super) fn next_ready(&mut self) -> Option<LiveEvent> {
        let ev = self.pending.remove(&(self.head + 1))?;
        self.head = ev.offset;
        Some(ev)
    }

    /// [`Sequence::offer`], then every event it put in order.
    #[cfg(test)]
    fn accept(&mut self, ev: LiveEvent) -> Vec<LiveEvent> {
        self.offer(ev);
        std::iter::from_fn(|| self.next_ready()).collect()
    }

    /// Keeps a delivered event among the recent ones.
    pub(super) fn remember(&mut self, ev: LiveEvent) {
        self.recent.push_back(ev);
        if self.recent.len() > RECENT {
            self.recent.pop_front();
        }
    }

    /// Whether events wait for a gap before them to close.
    pub(super) fn has_gap(&self) -> bool {
        !self.pending.is_empty()
    }

    /// How many events are missing before the first waiting one (at most `page`, at least
    /// one); `None` without a gap.
    pub(super) fn missing(&self, page: u32) -> Option<u32> {
        let &first = self.pending.keys().next()?;
        let want = u32::try_from(first - self.head - 1)
            .unwrap_or(page)
            .min(page);
        Some(want.max(1))
    }

    /// The recent events after `cursor`, if memory reaches back to it (else the log must be
    /// read).
    pub(super) fn recent_after(&self, cursor: i64) -> Option<Vec<LiveEvent>> {
        let reaches = self
            .recent
            .front()
            .is_some_and(|first| first.offset <= cursor + 1);
        (cursor < self.head && reaches).then(|| {
            self.recent
                .iter()
                .filter(|ev| ev.offset > cursor)
                .cloned()
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn ev(offset: i64) -> LiveEvent {
        LiveEvent {
            workspace_id: 1,
            offset,
            document_id: None,
            payload: Arc::new(serde_json::json!({ "offset": offset })),
            born: 0,
        }
    }

    fn offsets(events: &[LiveEvent]) -> Vec<i64> {
        events.iter().map(|e| e.offset).collect()
    }

    #[test]
    fn every_offset_once_and_in_order_whatever_the_arrival() {
        let mut seq = Sequence::default();
        seq.start_at(10);
        assert!(
            seq.accept(ev(9)).is_empty(),
            "at or below the head: dropped"
        );
        assert!(seq.accept(ev(10)).is_empty());
        assert_eq!(offsets(&seq.accept(ev(11))), [11]);
        // 13 and 14 wait for 12.
        assert!(seq.accept(ev(13)).is_empty());
        assert!(seq.accept(ev(14)).is_empty());
        assert!(seq.accept(ev(13)).is_empty(), "twice while waiting: once");
        assert!(seq.has_gap());
        assert_eq!(seq.missing(500), Some(1));
        assert_eq!(offsets(&seq.accept(ev(12))), [12, 13, 14]);
        assert!(!seq.has_gap());
        assert_eq!(seq.missing(500), None);
        assert_eq!(seq.head(), 14);
        assert!(
            seq.accept(ev(12)).is_empty(),
            "from the log after live: once"
        );
    }

    #[test]
    fn a_gap_is_read_a_page_at_a_time() {
        let mut seq = Sequence::default();
        seq.start_at(0);
        assert!(seq.accept(ev(2_001)).is_empty());
        assert_eq!(seq.missing(500), Some(500));
        assert_eq!(seq.missing(5_000), Some(2_000));
    }

    #[test]
    fn recent_events_serve_a_catch_up_only_when_they_reach_back_to_it() {
        let mut seq = Sequence::default();
        seq.start_at(0);
        for n in 1..=(RECENT as i64 + 10) {
            for e in seq.accept(ev(n)) {
                seq.remember(e);
            }
        }
        let head = seq.head();
        assert_eq!(
            offsets(&seq.recent_after(head - 3).unwrap()),
            [head - 2, head - 1, head]
        );
        assert!(seq.recent_after(head).is_none(), "nothing missed");
        assert!(
            seq.recent_after(5).is_none(),
            "older than memory: read the log"
        );
        let oldest = head - RECENT as i64 + 1;
        assert_eq!(seq.recent_after(oldest - 1).unwrap().len(), RECENT);
    }
}
