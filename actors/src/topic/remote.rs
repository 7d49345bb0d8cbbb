//! What the other nodes hold of a topic's presence: per node, its metas by `phx_ref`, kept
//! from their changes and replaced whole by their snapshots. A plain struct: the topic turns
//! what it returns into its own presence changes.

use std::collections::HashMap;

use stoa_protocol::bus::KeyedMeta;

/// The other nodes' metas on one topic.
#[derive(Default)]
pub(super) struct RemoteMetas {
    nodes: HashMap<String, HashMap<String, KeyedMeta>>,
}

impl RemoteMetas {
    /// Takes `node`'s joins and leaves, or (`snapshot`) its whole presence in place of what
    /// was held of it; the changes that makes to the topic's view, as (meta, joined).
    pub(super) fn apply(
        &mut self,
        node: &str,
        joins: Vec<KeyedMeta>,
        leaves: Vec<String>,
        snapshot: bool,
    ) -> Vec<(KeyedMeta, bool)> {
        let held = self.nodes.entry(node.to_string()).or_default();
        let mut changes = Vec::new();
        if snapshot {
            let fresh: HashMap<String, KeyedMeta> = joins
                .into_iter()
                .map(|km| (km.meta.phx_ref.clone(), km))
                .collect();
            let old = std::mem::take(held);
            for (r, km) in &old {
                if !fresh.contains_key(r) {
                    changes.push((km.clone(), false));
                }
            }
            for (r, km) in &fresh {
                if !old.contains_key(r) {
                    changes.push((km.clone(), true));
                }
            }
            *held = fresh;
        } else {
            for km in joins {
                if held.insert(km.meta.phx_ref.clone(), km.clone()).is_none() {
                    changes.push((km, true));
                }
            }
            for r in leaves {
                if let Some(km) = held.remove(&r) {
                    changes.push((km, false));
                }
            }
        }
        if self.nodes.get(node).is_some_and(HashMap::is_empty) {
            self.nodes.remove(node);
        }
        changes
    }

    /// Whether anything of `node` is held.
    pub(super) fn holds(&self, node: &str) -> bool {
        self.nodes.contains_key(node)
    }

    /// Every meta held, of every node.
    pub(super) fn metas(&self) -> impl Iterator<Item = &KeyedMeta> {
        self.nodes.values().flat_map(HashMap::values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stoa_protocol::PresenceMeta;

    fn km(key: &str, r: &str) -> KeyedMeta {
        KeyedMeta {
            key: key.into(),
            meta: PresenceMeta {
                phx_ref: r.into(),
                phx_ref_prev: None,
                fields: Default::default(),
            },
        }
    }

    fn refs(changes: &[(KeyedMeta, bool)]) -> Vec<(String, bool)> {
        let mut out: Vec<(String, bool)> = changes
            .iter()
            .map(|(km, join)| (km.meta.phx_ref.clone(), *join))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn changes_and_snapshots_from_other_nodes() {
        let mut remote = RemoteMetas::default();
        let c = remote.apply("b", vec![km("7", "b1"), km("8", "b2")], vec![], false);
        assert_eq!(refs(&c), [("b1".into(), true), ("b2".into(), true)]);
        // A join heard twice is one join; a leave of what is not held changes nothing.
        assert!(remote
            .apply("b", vec![km("7", "b1")], vec!["zz".into()], false)
            .is_empty());
        // A snapshot replaces what was held: b2 left meanwhile, b3 joined.
        let c = remote.apply("b", vec![km("7", "b1"), km("9", "b3")], vec![], true);
        assert_eq!(refs(&c), [("b2".into(), false), ("b3".into(), true)]);
        assert_eq!(remote.metas().count(), 2);
        // An empty snapshot (a node gone) takes everything of it, and forgets the node.
        let c = remote.apply("b", vec![], vec![], true);
        assert_eq!(refs(&c), [("b1".into(), false), ("b3".into(), false)]);
        assert!(!remote.holds("b"));
        assert_eq!(remote.metas().count(), 0);
    }
}
