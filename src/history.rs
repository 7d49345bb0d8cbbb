//! Document history: versions made from a document's Yjs state, read back, compared and
//! thinned. A version is stored as a link of a chain (see `document_versions`): the whole
//! state every [`MAX_CHAIN`] versions, otherwise only what changed since the version before
//! (a Yjs update against that version's state vector), deflated. Reading a version applies
//! its chain from the nearest whole state; everything here that works on Yjs state runs on
//! the blocking pool, never on a transport thread.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use similar::{Algorithm, DiffTag};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, StateVector, Transact, Update};

use crate::domain::{now_ms, DocumentId, UserId};
use crate::store::{Event, NewVersion, Store, StoreError, StoreResult, VersionLink, VersionMeta};
use stoa_actors::doc_text::{is_fragment, text_of};

/// Versions after a whole state before the next whole state: reading any version applies
/// at most this many updates after one whole state.
pub const MAX_CHAIN: i64 = 32;
/// Inflated data of a version is never larger than this (a document's state is bounded by
/// `realtime.max_document_bytes`, 4 MiB by default, and its text by the same).
const MAX_INFLATED: u64 = 256 * 1024 * 1024;
/// How long a diff may search for the smallest difference before it settles for a larger
/// one.
const DIFF_TIME: Duration = Duration::from_millis(200);

fn deflate(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = e.write_all(bytes);
    e.finish().unwrap_or_default()
}

fn inflate(bytes: &[u8]) -> StoreResult<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(bytes)
        .take(MAX_INFLATED)
        .read_to_end(&mut out)
        .map_err(|e| StoreError::Corrupt(format!("a version does not inflate: {e}")))?;
    Ok(out)
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("a version's state: {what}"))
}

/// A document made of `updates`, applied in order.
fn doc_of(updates: &[Vec<u8>]) -> StoreResult<yrs::Doc> {
    let doc = yrs::Doc::new();
    {
        let mut txn = doc.transact_mut();
        for bytes in updates {
            let update = Update::decode_v1(bytes).map_err(corrupt)?;
            txn.apply_update(update).map_err(corrupt)?;
        }
    }
    Ok(doc)
}

/// Runs CPU work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> StoreResult<T> + Send + 'static,
) -> StoreResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Corrupt(format!("version work stopped: {e}")))?
}

/// What a new version is: how it came to be and by whom.
#[derive(Debug, Clone)]
pub struct VersionOf {
    /// `auto`, `write`, `restore` or `named`.
    pub kind: &'static str,
    pub name: Option<String>,
    pub authors: Vec<UserId>,
    pub created_by: Option<UserId>,
    pub restored_from: Option<i64>,
    /// The log position `updates` reach, when they are the log's.
    pub through: Option<i64>,
}

/// Makes a version of the document whose state `updates` make (its log, or a prefix of
/// it), against the newest version. A named version is announced (`document.versioned`).
pub async fn make_version(
    store: &dyn Store,
    doc: DocumentId,
    updates: Vec<Vec<u8>>,
    of: VersionOf,
) -> StoreResult<(VersionMeta, Option<Event>)> {
    let head = store.version_head(doc).await?;
    let announce = of.kind == "named";
    let new = blocking(move || {
        let state = doc_of(&updates)?;
        let txn = state.transact();
        let state_vector = txn.state_vector().encode_v1();
        let (delta, base, chain) = match &head {
            Some(h) if h.chain < MAX_CHAIN => {
                let sv = StateVector::decode_v1(&h.state_vector).map_err(corrupt)?;
                (txn.encode_state_as_update_v1(&sv), false, h.chain + 1)
            }
            _ => (
                txn.encode_state_as_update_v1(&StateVector::default()),
                true,
                0,
            ),
        };
        drop(txn);
        let text = text_of(&state);
        let before = match head.as_ref().and_then(|h| h.text_z.as_deref()) {
            Some(z) => String::from_utf8(inflate(z)?).unwrap_or_default(),
            None => String::new(),
        };
        let counts = changes(&before, &text, is_fragment(&state));
        Ok(NewVersion {
            kind: of.kind,
            name: of.name,
            authors: of.authors,
            created_by: of.created_by,
            state_vector,
            delta: deflate(&delta),
            base,
            chain,
            text_z: deflate(text.as_bytes()),
            size: text.chars().count() as i64,
            added: counts.added,
            removed: counts.removed,
            restored_from: of.restored_from,
            through: of.through,
        })
    })
    .await?;
    store.insert_version(doc, &new, announce).await
}

/// A version's kept text, inflated.
pub fn inflate_text(z: &[u8]) -> Option<String> {
    inflate(z).ok().and_then(|b| String::from_utf8(b).ok())
}

/// A version read back: its document and what it says of itself.
pub struct Version {
    pub meta: VersionMeta,
    pub doc: yrs::Doc,
}

impl Version {
    pub fn text(&self) -> String {
        text_of(&self.doc)
    }

    /// Its whole state as one update (what `Y.applyUpdate` loads).
    pub fn state(&self) -> Vec<u8> {
        self.doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    pub fn is_fragment(&self) -> bool {
        is_fragment(&self.doc)
    }
}

/// Reads version `version` of the document: `None` if it has no such version.
pub async fn read_version(
    store: &dyn Store,
    doc: DocumentId,
    version: i64,
) -> StoreResult<Option<Version>> {
    let Some((meta, _)) = store.version(doc, version).await? else {
        return Ok(None);
    };
    let chain = store.version_chain(doc, version).await?;
    let doc = blocking(move || {
        let updates = chain
            .iter()
            .map(|link| inflate(&link.delta))
            .collect::<StoreResult<Vec<_>>>()?;
        doc_of(&updates)
    })
    .await?;
    Ok(Some(Version { meta, doc }))
}

/// The current document as its log makes it.
pub async fn current(store: &dyn Store, doc: DocumentId) -> StoreResult<yrs::Doc> {
    let (updates, _) = store.document_updates(doc, 0).await?;
    blocking(move || doc_of(&updates)).await
}

/// Characters added and removed from `old` to `new`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub added: i64,
    pub removed: i64,
}

/// One run of a diff: text kept (`equal`), taken out (`delete`) or put in (`insert`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Hunk {
    /// `equal`, `delete` or `insert`.
    pub op: &'static str,
    /// The text. A long `equal` run keeps only its first and last 200 characters.
    pub text: String,
    /// Characters of the run.
    pub length: i64,
    /// Characters of a long `equal` run left out of `text` (between its two ends).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elided: Option<i64>,
}

/// The diff from `old` to `new`: by lines (a fragment document's blocks), each changed
/// line then by words. Counts are of characters.
pub fn diff(old: &str, new: &str, blocks: bool) -> (Vec<Hunk>, Counts) {
    // Lines (a fragment document's blocks) first, then words within the lines that
    // changed: the word diff then runs over a few lines, not over the whole document.
    let _ = blocks;
    let mut hunks = Vec::new();
    let mut counts = Counts::default();
    // Each line with the line break after it: the hunks put together are the text.
    let a: Vec<&str> = old.split_inclusive('\n').collect();
    let b: Vec<&str> = new.split_inclusive('\n').collect();
    let deadline = Instant::now() + DIFF_TIME;
    let ops = similar::capture_diff_slices_deadline(Algorithm::Myers, &a, &b, Some(deadline));
    for op in ops {
        let (tag, o, n) = op.as_tag_tuple();
        let join = |lines: &[&str]| lines.concat();
        match tag {
            DiffTag::Equal => push(&mut hunks, "equal", &join(&a[o])),
            DiffTag::Delete => push(&mut hunks, "delete", &join(&a[o])),
            DiffTag::Insert => push(&mut hunks, "insert", &join(&b[n])),
            DiffTag::Replace => {
                let (old_words, new_words) = (join(&a[o]), join(&b[n]));
                let x = words(&old_words);
                let y = words(&new_words);
                let inner =
                    similar::capture_diff_slices_deadline(Algorithm::Myers, &x, &y, Some(deadline));
                for op in inner {
                    let (tag, o, n) = op.as_tag_tuple();
                    let join = |tokens: &[&str]| tokens.concat();
                    match tag {
                        DiffTag::Equal => push(&mut hunks, "equal", &join(&x[o])),
                        DiffTag::Delete => push(&mut hunks, "delete", &join(&x[o])),
                        DiffTag::Insert => push(&mut hunks, "insert", &join(&y[n])),
                        DiffTag::Replace => {
                            push(&mut hunks, "delete", &join(&x[o]));
                            push(&mut hunks, "insert", &join(&y[n]));
                        }
                    }
                }
            }
        }
    }
    for h in &hunks {
        match h.op {
            "insert" => counts.added += h.length,
            "delete" => counts.removed += h.length,
            _ => {}
        }
    }
    for h in &mut hunks {
        elide(h);
    }
    (hunks, counts)
}

/// Text as a reader compares it: words (letters and digits), runs of spaces, and each other
/// character on its own.
fn words(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut start = 0;
    let mut kind = None;
    for (i, c) in text.char_indices() {
        let k = if c.is_alphanumeric() || c == '_' {
            Some(0)
        } else if c.is_whitespace() && c != '\n' {
            Some(1)
        } else {
            None
        };
        if i > start && (k.is_none() || k != kind) {
            tokens.push(&text[start..i]);
            start = i;
        }
        kind = k;
        if k.is_none() {
            tokens.push(&text[i..i + c.len_utf8()]);
            start = i + c.len_utf8();
        }
    }
    if start < text.len() {
        tokens.push(&text[start..]);
    }
    tokens
}

/// Adds a run, joined to the one before when it is of the same kind (block runs are
/// separated by the line break between them).
fn push(hunks: &mut Vec<Hunk>, op: &'static str, text: &str) {
    if text.is_empty() {
        return;
    }
    let length = text.chars().count() as i64;
    match hunks.last_mut() {
        Some(last) if last.op == op => {
            last.text.push_str(text);
            last.length += length;
        }
        _ => hunks.push(Hunk {
            op,
            text: text.to_string(),
            length,
            elided: None,
        }),
    }
}

/// Keeps the two ends of a long `equal` run.
fn elide(h: &mut Hunk) {
    const END: usize = 200;
    if h.op != "equal" || h.length <= (2 * END + 100) as i64 {
        return;
    }
    let chars: Vec<char> = h.text.chars().collect();
    let head: String = chars[..END].iter().collect();
    let tail: String = chars[chars.len() - END..].iter().collect();
    h.elided = Some((chars.len() - 2 * END) as i64);
    h.text = format!("{head}{tail}");
}

/// What changed from `old` to `new`, counted.
pub fn changes(old: &str, new: &str, blocks: bool) -> Counts {
    diff(old, new, blocks).1
}

/// How automatic versions are thinned: every one for `keep_all`, then the newest of each
/// hour for `keep_hourly`, then the newest of each day. Named versions, and the newest
/// version, are always kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub keep_all: Duration,
    pub keep_hourly: Duration,
}

/// The versions `retention` drops at `now`, oldest first.
pub fn to_drop(versions: &[VersionMeta], retention: Retention, now: i64) -> Vec<i64> {
    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;
    let all_until = now - retention.keep_all.as_millis() as i64;
    let hourly_until = now - (retention.keep_all + retention.keep_hourly).as_millis() as i64;
    let newest = versions.iter().map(|v| v.id).max();
    // Walk from the newest: a version is kept when it is the newest of its bucket.
    let mut seen = std::collections::HashSet::new();
    let mut drop = Vec::new();
    for v in versions.iter().rev() {
        if v.kind == "named" || v.created_at > all_until {
            continue;
        }
        let bucket = if v.created_at > hourly_until {
            (1, v.created_at.div_euclid(HOUR))
        } else {
            (2, v.created_at.div_euclid(DAY))
        };
        // The newest version is always kept, as its bucket's.
        if !seen.insert(bucket) && Some(v.id) != newest {
            drop.push(v.id);
        }
    }
    drop.reverse();
    drop
}

/// Thins the document's versions by `retention`: each dropped version's change is folded
/// into the version after it, so every version kept reads exactly as before.
pub async fn thin(
    store: &dyn Store,
    doc: DocumentId,
    retention: Retention,
    now: i64,
) -> StoreResult<usize> {
    let versions = store.all_versions(doc).await?;
    let dropped = to_drop(&versions, retention, now);
    let mut done = 0;
    for id in dropped {
        // The version after it, now (earlier folds moved nothing but contents).
        let versions = store.all_versions(doc).await?;
        let Some(pos) = versions.iter().position(|v| v.id == id) else {
            continue;
        };
        let Some(next) = versions.get(pos + 1) else {
            continue;
        };
        let mut authors = versions[pos].authors.clone();
        for a in &next.authors {
            if !authors.contains(a) {
                authors.push(*a);
            }
        }
        let Some((link, next_link)) = store.version_links(doc, id, next.id).await? else {
            continue;
        };
        let (merged, base) = blocking(move || fold(&link, &next_link)).await?;
        store
            .fold_version(doc, id, next.id, &merged, base, &authors)
            .await?;
        done += 1;
    }
    Ok(done)
}

/// One link holding what two consecutive links hold: the state after both.
fn fold(link: &VersionLink, next: &VersionLink) -> StoreResult<(Vec<u8>, bool)> {
    if next.base {
        return Ok((next.delta.clone(), true));
    }
    let a = inflate(&link.delta)?;
    let b = inflate(&next.delta)?;
    let merged = yrs::merge_updates_v1([a.as_slice(), b.as_slice()]).map_err(corrupt)?;
    Ok((deflate(&merged), link.base))
}

/// The retention of the settings (`documents.*`).
pub fn retention_of(keep_all_hours: u64, keep_hourly_days: u64) -> Retention {
    Retention {
        keep_all: Duration::from_secs(keep_all_hours * 3600),
        keep_hourly: Duration::from_secs(keep_hourly_days * 24 * 3600),
    }
}

/// The time now, for callers that thin.
pub fn now() -> i64 {
    now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_compared_by_words() {
        assert_eq!(
            words("ab, c  d\né"),
            ["ab", ",", " ", "c", "  ", "d", "\n", "é"]
        );
        assert_eq!(words(""), Vec::<&str>::new());
        let (hunks, counts) = diff("alpha beta", "alpha gamma", false);
        assert_eq!(
            counts,
            Counts {
                added: 5,
                removed: 4
            }
        );
        assert_eq!(
            hunks
                .iter()
                .map(|h| (h.op, h.text.as_str()))
                .collect::<Vec<_>>(),
            [("equal", "alpha "), ("delete", "beta"), ("insert", "gamma")]
        );
    }

    #[test]
    fn diffs_count_characters_and_keep_blocks_whole() {
        let (hunks, counts) = diff("hello world", "hello brave world", false);
        assert_eq!(
            counts,
            Counts {
                added: 6,
                removed: 0
            }
        );
        assert_eq!(
            hunks
                .iter()
                .map(|h| (h.op, h.text.as_str()))
                .collect::<Vec<_>>(),
            [
                ("equal", "hello "),
                ("insert", "brave "),
                ("equal", "world")
            ]
        );
        let (hunks, counts) = diff("a\nb\nc", "a\nB\nc\nd", true);
        assert_eq!(
            counts,
            Counts {
                added: 3,
                removed: 1
            }
        );
        let rebuilt: String = hunks
            .iter()
            .filter(|h| h.op != "delete")
            .map(|h| h.text.as_str())
            .collect();
        assert_eq!(rebuilt, "a\nB\nc\nd");
        assert!(hunks
            .iter()
            .any(|h| h.op == "insert" && h.text.contains('d')));
        // A long run kept equal is cut to its ends.
        let long = "word ".repeat(2_000);
        let (hunks, _) = diff(&format!("{long}a"), &format!("{long}b"), false);
        assert_eq!(hunks[0].elided, Some(10_000 - 400));
        assert_eq!(hunks[0].text.chars().count(), 400);
    }

    fn v(id: i64, kind: &str, created_at: i64) -> VersionMeta {
        VersionMeta {
            id,
            document_id: 1,
            kind: kind.into(),
            name: None,
            authors: Vec::new(),
            created_by: None,
            size: 0,
            added: 0,
            removed: 0,
            restored_from: None,
            base: false,
            created_at,
        }
    }

    #[test]
    fn retention_keeps_all_for_a_day_then_hourly_then_daily() {
        const H: i64 = 3_600_000;
        let now = 1000 * 24 * H;
        let r = Retention {
            keep_all: Duration::from_secs(24 * 3600),
            keep_hourly: Duration::from_secs(30 * 24 * 3600),
        };
        let versions = vec![
            // 40 days old, same day: one kept.
            v(1, "auto", now - 40 * 24 * H),
            v(2, "auto", now - 40 * 24 * H + 1),
            // 3 days old, same hour: one kept; a named one is kept anyway.
            v(3, "auto", now - 72 * H),
            v(4, "named", now - 72 * H + 1),
            v(5, "write", now - 72 * H + 2),
            // Within the day: all kept.
            v(6, "auto", now - H),
            v(7, "auto", now - H + 1),
        ];
        assert_eq!(to_drop(&versions, r, now), [1, 3]);
    }
}
