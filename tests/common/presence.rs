//! A client's view of a topic's presence, kept as phoenix.js keeps it: key → `phx_ref`s,
//! from `presence_state` (which replaces it) and `presence_diff` (joins first, then leaves).
//! Shared by every suite that watches presence, in-process or over a socket.

#![allow(dead_code)] // Shared by several test binaries; each uses a part of it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

#[derive(Default, Debug, Clone, PartialEq)]
pub struct PresenceView(pub BTreeMap<String, BTreeSet<String>>);

impl PresenceView {
    /// The `phx_ref`s of one key's entry (`{"metas": [...]}`).
    pub fn refs_of(entry: &Value) -> Vec<String> {
        entry["metas"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["phx_ref"].as_str().map(str::to_string))
            .collect()
    }

    /// The view a `presence_state` payload gives.
    pub fn from_state(state: &Value) -> PresenceView {
        let mut view = PresenceView::default();
        view.set_state(state);
        view
    }

    /// Replaces the view with a `presence_state` payload.
    pub fn set_state(&mut self, state: &Value) {
        self.0.clear();
        for (key, entry) in state.as_object().into_iter().flatten() {
            let refs: BTreeSet<String> = Self::refs_of(entry).into_iter().collect();
            if !refs.is_empty() {
                self.0.insert(key.clone(), refs);
            }
        }
    }

    /// Applies a `presence_diff` payload: joins first, then leaves.
    pub fn apply(&mut self, diff: &Value) {
        for (key, entry) in diff["joins"].as_object().into_iter().flatten() {
            self.0
                .entry(key.clone())
                .or_default()
                .extend(Self::refs_of(entry));
        }
        for (key, entry) in diff["leaves"].as_object().into_iter().flatten() {
            let gone = Self::refs_of(entry);
            if let Some(refs) = self.0.get_mut(key) {
                refs.retain(|r| !gone.contains(r));
            }
        }
        self.0.retain(|_, refs| !refs.is_empty());
    }

    /// Takes a whole frame (`[join_ref, ref, topic, event, payload]`) if it is presence;
    /// whether it was.
    pub fn apply_frame(&mut self, frame: &Value) -> bool {
        match frame[3].as_str() {
            Some("presence_state") => self.set_state(&frame[4]),
            Some("presence_diff") => self.apply(&frame[4]),
            _ => return false,
        }
        true
    }

    /// Metas in all.
    pub fn metas(&self) -> usize {
        self.0.values().map(BTreeSet::len).sum()
    }

    /// Metas under `key`.
    pub fn count(&self, key: &str) -> usize {
        self.0.get(key).map_or(0, BTreeSet::len)
    }

    /// Every `phx_ref`.
    pub fn refs(&self) -> BTreeSet<String> {
        self.0.values().flatten().cloned().collect()
    }
}
