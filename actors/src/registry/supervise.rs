//! Supervision: finds or starts a topic's actor, and puts a fresh one in the place of one
//! that crashed, at most `MAX_RESTARTS` times in `RESTART_WINDOW`.

use super::*;
use crate::ports::Grant;

/// Restarts allowed to one topic within `RESTART_WINDOW`.
const MAX_RESTARTS: u32 = 3;
const RESTART_WINDOW: Duration = Duration::from_secs(10);

/// A topic's recent restarts, carried from each actor to its successor.
#[derive(Debug, Clone, Copy)]
pub(super) struct Restarts {
    count: u32,
    since: Instant,
}

impl Restarts {
    pub(super) fn none() -> Restarts {
        Restarts {
            count: 0,
            since: Instant::now(),
        }
    }

    /// Counts one more; `None` when that is more than the window allows.
    fn one_more(self) -> Option<Restarts> {
        let mut next = if self.since.elapsed() > RESTART_WINDOW {
            Restarts::none()
        } else {
            self
        };
        next.count += 1;
        (next.count <= MAX_RESTARTS).then_some(next)
    }
}

impl Shared {
    /// The topic's actor, started if there is none (or the previous one died).
    ///
    /// A document topic is entered in `documents` (its workspace's index) and in `topics`
    /// together, under the workspace's index entry, and leaves both together (`topic_ended`):
    /// a revocation or publication for the workspace, which reads the index first, finds
    /// every document topic that exists, including one being started or restarted. Lock
    /// order, everywhere: a `documents` guard, then `topics`, never the reverse.
    pub(crate) fn topic_actor(self: &Arc<Self>, topic: Topic, grant: &Grant) -> TopicRef {
        if let Some(live) = self.live(topic) {
            return live;
        }
        match (topic, grant.workspace_id) {
            (Topic::Document(doc), Some(ws)) => {
                let mut docs = self.documents.entry(ws).or_default();
                docs.insert(doc);
                self.entry(topic, Some(ws))
            }
            (_, workspace) => self.entry(topic, workspace),
        }
    }

    /// The live actor in `topics`, started (or restarted) if needed.
    pub(super) fn entry(self: &Arc<Self>, topic: Topic, workspace: Option<i64>) -> TopicRef {
        let mut entry = self
            .topics
            .entry(topic)
            .or_insert_with(|| self.start_topic(topic, workspace, Restarts::none()));
        if !entry.addr.connected() {
            *entry = self.start_topic(topic, workspace, Restarts::none());
        }
        entry.clone()
    }

    /// Removes a topic that ended from `topics`, and a document topic from its workspace's
    /// index with it (see [`Shared::topic_actor`]).
    pub(super) fn forget(&self, topic: Topic, workspace: Option<i64>, dead: &TopicRef) {
        match (topic, workspace) {
            (Topic::Document(doc), Some(ws)) => {
                if let Some(mut docs) = self.documents.get_mut(&ws) {
                    if self.topics.remove_if(&topic, |_, a| a == dead).is_some() {
                        docs.remove(&doc);
                    }
                }
            }
            _ => {
                self.topics.remove_if(&topic, |_, a| a == dead);
            }
        }
        self.interest(&channels_of(topic, workspace), false);
    }

    /// Starts a topic actor on one of the topic threads, with its watcher beside it.
    pub(super) fn start_topic(
        self: &Arc<Self>,
        topic: Topic,
        workspace: Option<i64>,
        restarts: Restarts,
    ) -> TopicRef {
        let (goodbye, watch) = tokio::sync::oneshot::channel::<()>();
        let actor = TopicActor::new(topic, workspace, self.env.clone(), goodbye);
        let capacity = self.limits().topic_mailbox;
        let slot = (self.env.next_id() as usize) % self.arbiters.len().max(1);
        let arbiter = self.arbiters.get(slot);
        let addr = match arbiter {
            Some(arbiter) => TopicActor::start_in_arbiter(arbiter, move |ctx| {
                ctx.set_mailbox_capacity(capacity);
                actor
            }),
            None => TopicActor::create(move |ctx| {
                ctx.set_mailbox_capacity(capacity);
                actor
            }),
        };
        let topic_ref = TopicRef::new(addr, self.limits());
        if restarts.count == 0 {
            // A successor after a crash inherits its predecessor's interest.
            self.interest(&channels_of(topic, workspace), true);
        }
        let shared = self.clone();
        let watched = topic_ref.clone();
        let watcher = async move {
            let clean = watch.await.is_ok();
            shared.topic_ended(topic, workspace, &watched, clean, restarts);
        };
        match arbiter {
            Some(arbiter) => {
                arbiter.spawn(watcher);
            }
            None => {
                actix::spawn(watcher);
            }
        }
        topic_ref
    }

    /// The supervisor's decision when a topic actor ended.
    pub(super) fn topic_ended(
        self: &Arc<Self>,
        topic: Topic,
        workspace: Option<i64>,
        dead: &TopicRef,
        clean: bool,
        restarts: Restarts,
    ) {
        if clean || self.shutting_down() {
            return self.forget(topic, workspace, dead);
        }
        Stats::add(&self.stats().topic_crashes, 1);
        let Some(restarts) = restarts.one_more() else {
            tracing::error!(%topic, "topic actor crashed again; not restarted until joined");
            return self.forget(topic, workspace, dead);
        };
        tracing::error!(%topic, "topic actor crashed; starting a fresh one");
        if let Some(mut entry) = self.topics.get_mut(&topic) {
            if *entry == *dead {
                *entry = self.start_topic(topic, workspace, restarts);
                Stats::add(&self.stats().topic_restarts, 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_restarts_at_most_three_times_in_ten_seconds() {
        let mut restarts = Restarts::none();
        for n in 1..=MAX_RESTARTS {
            restarts = restarts.one_more().unwrap_or_else(|| panic!("restart {n}"));
        }
        assert!(restarts.one_more().is_none(), "a fourth within the window");
        // Once the window has passed, the count starts again.
        let Some(long_ago) = Instant::now().checked_sub(RESTART_WINDOW + Duration::from_secs(1))
        else {
            return;
        };
        let old = Restarts {
            count: MAX_RESTARTS,
            since: long_ago,
        };
        assert_eq!(old.one_more().map(|r| r.count), Some(1));
        assert_eq!((MAX_RESTARTS, RESTART_WINDOW), (3, Duration::from_secs(10)));
    }
}
