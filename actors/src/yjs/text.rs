//! A document's text: what REST, search and reports see of a Yjs document, and a REST
//! write of text made the smallest Yjs change.

use yrs::{ReadTxn, Transact};

/// The document's text: its `Y.Text` named `content`, or else its `Y.XmlFragment` named
/// `default` (ProseMirror, TipTap) flattened, one line per block.
pub fn text_of(doc: &yrs::Doc) -> String {
    use yrs::GetString;
    let txn = doc.transact();
    if let Some(text) = txn.get_text("content") {
        let s = text.get_string(&txn);
        if !s.is_empty() {
            return s;
        }
    }
    match txn.get_xml_fragment("default") {
        Some(fragment) => blocks_of(&txn, &fragment).join("\n"),
        None => String::new(),
    }
}

/// Whether the document is edited as a fragment (ProseMirror, TipTap): an empty `content`
/// text and blocks in `default`. Its text is then one line per block.
pub fn is_fragment(doc: &yrs::Doc) -> bool {
    use yrs::{GetString, XmlFragment as _};
    let txn = doc.transact();
    let text_empty = txn
        .get_text("content")
        .is_none_or(|t| t.get_string(&txn).is_empty());
    text_empty
        && txn
            .get_xml_fragment("default")
            .is_some_and(|f| f.len(&txn) > 0)
}

/// Server clients' ids: above any a browser picks (2^32 + the document's id).
pub const SERVER_CLIENTS: u64 = 1 << 32;

/// The update that starts a document whose log is empty as its REST text: inserted by the
/// document's own server client, so that whoever makes it (two nodes opening the document,
/// or the first version of a document made over REST) makes the identical update, which
/// Yjs applies once.
pub fn seed_update(document: i64, text: &str) -> Vec<u8> {
    use yrs::Text;
    let seeder = yrs::Doc::with_options(yrs::Options {
        client_id: yrs::ClientID::new(SERVER_CLIENTS + document as u64),
        ..yrs::Options::default()
    });
    let content = seeder.get_or_insert_text("content");
    content.insert(&mut seeder.transact_mut(), 0, text);
    let update = seeder
        .transact()
        .encode_state_as_update_v1(&yrs::StateVector::default());
    update
}

/// The text of each top-level block of a fragment (its text nodes, nested ones included).
fn blocks_of<T: yrs::ReadTxn>(txn: &T, fragment: &yrs::XmlFragmentRef) -> Vec<String> {
    use yrs::types::text::Text as _;
    use yrs::{XmlFragment as _, XmlOut};
    let mut blocks = Vec::new();
    for child in fragment.children(txn) {
        let mut block = String::new();
        let mut add = |t: &yrs::XmlTextRef| {
            for d in t.diff(txn, |_| ()) {
                if let yrs::Out::Any(yrs::Any::String(s)) = d.insert {
                    block.push_str(&s);
                }
            }
        };
        match child {
            XmlOut::Text(t) => add(&t),
            XmlOut::Element(e) => {
                for node in e.successors(txn) {
                    if let XmlOut::Text(t) = node {
                        add(&t);
                    }
                }
            }
            XmlOut::Fragment(_) => {}
        }
        blocks.push(block);
    }
    blocks
}

/// Makes the document's text `text` with the smallest change, as the editors keep it: in
/// the `content` text, or — for a document edited as a ProseMirror/TipTap fragment (an
/// empty `content`, blocks in `default`) — in the fragment, one `paragraph` per line,
/// keeping the blocks (and their formatting) that the write leaves as they were. The
/// update, or `None` when the text is already `text`.
pub fn write_text(doc: &yrs::Doc, text: &str) -> Option<Vec<u8>> {
    use yrs::{GetString, Text, XmlElementPrelim, XmlFragment as _, XmlTextPrelim};
    let blocks = {
        let txn = doc.transact();
        let content_empty = txn
            .get_text("content")
            .is_none_or(|t| t.get_string(&txn).is_empty());
        let fragment = txn
            .get_xml_fragment("default")
            .filter(|f| content_empty && f.len(&txn) > 0);
        fragment.map(|f| blocks_of(&txn, &f))
    };
    let Some(old) = blocks else {
        let content = doc.get_or_insert_text("content");
        let mut txn = doc.transact_mut();
        let old = content.get_string(&txn);
        let (start, end, insert) = changed_span(&old, text);
        if start == end && insert.is_empty() {
            return None;
        }
        if end > start {
            content.remove_range(&mut txn, start as u32, (end - start) as u32);
        }
        if !insert.is_empty() {
            content.insert(&mut txn, start as u32, insert);
        }
        return Some(txn.encode_update_v1());
    };
    let new: Vec<&str> = text.split('\n').collect();
    let same = |a: usize, b: usize| old[a] == new[b];
    let mut head = 0;
    while head < old.len() && head < new.len() && same(head, head) {
        head += 1;
    }
    let mut tail = 0;
    while tail < old.len() - head
        && tail < new.len() - head
        && same(old.len() - 1 - tail, new.len() - 1 - tail)
    {
        tail += 1;
    }
    let (removed, added) = (old.len() - head - tail, &new[head..new.len() - tail]);
    if removed == 0 && added.is_empty() {
        return None;
    }
    let fragment = doc.get_or_insert_xml_fragment("default");
    let mut txn = doc.transact_mut();
    if removed > 0 {
        fragment.remove_range(&mut txn, head as u32, removed as u32);
    }
    for (i, line) in added.iter().enumerate() {
        let p = fragment.insert(
            &mut txn,
            (head + i) as u32,
            XmlElementPrelim::empty("paragraph"),
        );
        if !line.is_empty() {
            p.insert(&mut txn, 0, XmlTextPrelim::new(*line));
        }
    }
    Some(txn.encode_update_v1())
}

/// The byte range of `old` that differs from `new`, and what replaces it.
fn changed_span<'a>(old: &str, new: &'a str) -> (usize, usize, &'a str) {
    let prefix = old
        .char_indices()
        .zip(new.chars())
        .find(|((_, a), b)| a != b)
        .map_or(old.len().min(new.len()), |((i, _), _)| i);
    let prefix = (0..=prefix)
        .rev()
        .find(|i| new.is_char_boundary(*i))
        .unwrap_or(0);
    let (old_rest, new_rest) = (&old[prefix..], &new[prefix..]);
    let suffix = old_rest
        .chars()
        .rev()
        .zip(new_rest.chars().rev())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum::<usize>();
    (
        prefix,
        prefix + old_rest.len() - suffix,
        &new_rest[..new_rest.len() - suffix],
    )
}

/// A piece of a document's text ([`text_of`]) and the type that holds it: `start` is the
/// offset (in bytes) of its first character in the text, `len` its length.
struct Span {
    branch: yrs::branch::BranchPtr,
    start: usize,
    len: usize,
}

/// The document's text, and where each piece of it lives: the `content` text, or each text
/// node of the fragment's blocks (one line per block, as [`text_of`] flattens them).
fn layout(doc: &yrs::Doc) -> (String, Vec<Span>) {
    use yrs::types::text::Text as _;
    use yrs::{GetString, XmlFragment as _, XmlOut};
    let txn = doc.transact();
    if let Some(text) = txn.get_text("content") {
        let s = text.get_string(&txn);
        if !s.is_empty() {
            let span = Span {
                branch: yrs::branch::BranchPtr::from(AsRef::<yrs::branch::Branch>::as_ref(&text)),
                start: 0,
                len: s.len(),
            };
            return (s, vec![span]);
        }
    }
    let Some(fragment) = txn.get_xml_fragment("default") else {
        return (String::new(), Vec::new());
    };
    let mut out = String::new();
    let mut spans = Vec::new();
    for (i, child) in fragment.children(&txn).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let mut add = |t: &yrs::XmlTextRef| {
            let start = out.len();
            for d in t.diff(&txn, |_| ()) {
                if let yrs::Out::Any(yrs::Any::String(s)) = d.insert {
                    out.push_str(&s);
                }
            }
            spans.push(Span {
                branch: yrs::branch::BranchPtr::from(AsRef::<yrs::branch::Branch>::as_ref(t)),
                start,
                len: out.len() - start,
            });
        };
        match child {
            XmlOut::Text(t) => add(&t),
            XmlOut::Element(e) => {
                for node in e.successors(&txn) {
                    if let XmlOut::Text(t) = node {
                        add(&t);
                    }
                }
            }
            XmlOut::Fragment(_) => {}
        }
    }
    (out, spans)
}

/// A range of the document's text, `start..end` (byte offsets into [`text_of`]), as two Yjs
/// relative positions (encoded as `Y.encodeRelativePosition` does): the start sticks to the
/// range's first character, the end to its last, so the range moves with the edits around
/// it. `None` when the range is not within one piece of text per end.
pub fn anchor_range(doc: &yrs::Doc, start: usize, end: usize) -> Option<(Vec<u8>, Vec<u8>)> {
    use yrs::updates::encoder::Encode;
    use yrs::{Assoc, StickyIndex};
    let (_, spans) = layout(doc);
    let txn = doc.transact();
    let at = |offset: usize, assoc: Assoc, is_end: bool| {
        let span = spans.iter().find(|s| {
            if is_end {
                offset > s.start && offset <= s.start + s.len
            } else {
                offset >= s.start && offset < s.start + s.len
            }
        })?;
        StickyIndex::at(&txn, span.branch, (offset - span.start) as u32, assoc)
    };
    let a = at(start, Assoc::After, false)?;
    let b = at(end, Assoc::Before, true)?;
    Some((a.encode_v1(), b.encode_v1()))
}

/// Where a range made by [`anchor_range`] (or by an editor's selection) is now: its byte
/// offsets into [`text_of`], and the text itself. `None` when either end's text is gone;
/// an empty range when everything between the ends was deleted.
pub fn resolve_anchor(doc: &yrs::Doc, start: &[u8], end: &[u8]) -> Option<(usize, usize, String)> {
    use yrs::updates::decoder::Decode;
    use yrs::StickyIndex;
    // Positions come from clients: a decoder that panics on some input must not take the
    // caller with it.
    let decode = |bytes: &[u8]| {
        std::panic::catch_unwind(|| StickyIndex::decode_v1(bytes))
            .ok()?
            .ok()
    };
    let a = decode(start)?;
    let b = decode(end)?;
    let (text, spans) = layout(doc);
    let txn = doc.transact();
    let offset = |p: &StickyIndex| {
        let o = p.get_offset(&txn)?;
        let span = spans.iter().find(|s| s.branch == o.branch)?;
        Some(span.start + (o.index as usize).min(span.len))
    };
    let from = offset(&a)?;
    let to = offset(&b)?.max(from);
    let quoted = text.get(from..to)?.to_string();
    Some((from, to, quoted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use yrs::updates::decoder::Decode;
    use yrs::{StateVector, Text, Update, XmlElementPrelim, XmlFragment, XmlTextPrelim};

    #[test]
    fn the_text_is_the_content_text_or_the_fragment_in_lines() {
        let doc = yrs::Doc::new();
        let fragment = doc.get_or_insert_xml_fragment("default");
        {
            let mut txn = doc.transact_mut();
            for (i, line) in ["First paragraph", "Second one"].into_iter().enumerate() {
                let p = fragment.insert(&mut txn, i as u32, XmlElementPrelim::empty("paragraph"));
                p.insert(&mut txn, 0, XmlTextPrelim::new(line));
            }
        }
        // A client's update, applied to a fresh doc, as the server gets it.
        let update = doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        let server = yrs::Doc::new();
        server
            .transact_mut()
            .apply_update(Update::decode_v1(&update).unwrap())
            .unwrap();
        assert_eq!(text_of(&server), "First paragraph\nSecond one");
        let content = server.get_or_insert_text("content");
        content.insert(&mut server.transact_mut(), 0, "plain");
        assert_eq!(text_of(&server), "plain");
    }

    #[test]
    fn a_rest_write_to_a_fragment_document_edits_its_blocks() {
        let doc = yrs::Doc::new();
        let fragment = doc.get_or_insert_xml_fragment("default");
        {
            let mut txn = doc.transact_mut();
            for (i, line) in ["Title", "keep me", "old", "last"].into_iter().enumerate() {
                let p = fragment.insert(&mut txn, i as u32, XmlElementPrelim::empty("heading"));
                p.insert(&mut txn, 0, XmlTextPrelim::new(line));
            }
        }
        let before = doc.transact().state_vector();
        let replica = yrs::Doc::new();
        let all = doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        replica
            .transact_mut()
            .apply_update(Update::decode_v1(&all).unwrap())
            .unwrap();

        let update = write_text(&doc, "Title\nkeep me\nnew one\n\nlast").expect("a change");
        assert_eq!(text_of(&doc), "Title\nkeep me\nnew one\n\nlast");
        // The text went into the fragment, not into a `content` the editor does not show.
        let txn = doc.transact();
        assert!(txn.get_text("content").is_none_or(|t| t.len(&txn) == 0));
        // Untouched blocks are the same nodes (their element name kept); new ones are
        // paragraphs.
        let names: Vec<String> = fragment
            .children(&txn)
            .map(|c| match c {
                yrs::XmlOut::Element(e) => e.tag().to_string(),
                _ => "text".into(),
            })
            .collect();
        assert_eq!(
            names,
            ["heading", "heading", "paragraph", "paragraph", "heading"]
        );
        drop(txn);
        // Another editor applying the update sees the same.
        replica
            .transact_mut()
            .apply_update(Update::decode_v1(&update).unwrap())
            .unwrap();
        assert_eq!(text_of(&replica), text_of(&doc));
        assert!(doc.transact().state_vector() != before);
        assert_eq!(write_text(&doc, "Title\nkeep me\nnew one\n\nlast"), None);
        // A `content` document is still written in its text.
        let plain = yrs::Doc::new();
        assert!(write_text(&plain, "hello").is_some());
        assert_eq!(text_of(&plain), "hello");
    }

    #[test]
    fn a_fragment_made_by_the_js_client_is_read_as_lines() {
        use base64::Engine;
        // `Y.XmlFragment("default")` with two paragraphs, as yjs 13.6 encodes it.
        let update = BASE64
            .decode("AQb5kKvxCQAHAQdkZWZhdWx0AwlwYXJhZ3JhcGgHAPmQq/EJAAYEAPmQq/EJAQ9GaXJzdCBwYXJhZ3JhcGiH+ZCr8QkAAwlwYXJhZ3JhcGgHAPmQq/EJEQYEAPmQq/EJEgpTZWNvbmQgb25lAA==")
            .unwrap();
        let server = yrs::Doc::new();
        server
            .transact_mut()
            .apply_update(Update::decode_v1(&update).unwrap())
            .unwrap();
        assert_eq!(text_of(&server), "First paragraph\nSecond one");
    }

    #[test]
    fn the_changed_span_is_the_smallest_one() {
        assert_eq!(
            changed_span("hello world", "hello there world"),
            (6, 6, "there ")
        );
        assert_eq!(changed_span("abc", "abc"), (3, 3, ""));
        assert_eq!(changed_span("abc", ""), (0, 3, ""));
        assert_eq!(changed_span("", "new"), (0, 0, "new"));
        assert_eq!(changed_span("aXb", "aYb"), (1, 2, "Y"));
        // Characters of several bytes are never cut.
        assert_eq!(changed_span("héllo", "hallo"), (1, 3, "a"));
        assert_eq!(changed_span("ab", "aéb"), (1, 1, "é"));
    }

    #[test]
    fn anchors_follow_edits_around_them_and_detach_when_their_text_goes() {
        use yrs::Text;
        let doc = yrs::Doc::new();
        let content = doc.get_or_insert_text("content");
        content.insert(&mut doc.transact_mut(), 0, "the quick brown fox");
        let (a, b) = anchor_range(&doc, 4, 9).expect("an anchor");
        assert_eq!(resolve_anchor(&doc, &a, &b).unwrap().2, "quick");
        content.insert(&mut doc.transact_mut(), 0, "see: ");
        content.insert(&mut doc.transact_mut(), 14, " very");
        assert_eq!(resolve_anchor(&doc, &a, &b).unwrap().2, "quick");
        assert_eq!(text_of(&doc), "see: the quick very brown fox");
        content.remove_range(&mut doc.transact_mut(), 9, 5);
        let (from, to, quoted) = resolve_anchor(&doc, &a, &b).unwrap();
        assert_eq!((to - from, quoted.as_str()), (0, ""));
        assert!(resolve_anchor(&doc, b"not a position", &b).is_none());
        // Whatever bytes a client sends, the answer is a position or none.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..2000 {
            let bytes: Vec<u8> = (0..len % 64)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = resolve_anchor(&doc, &bytes, &b);
        }
    }

    #[test]
    fn anchors_in_a_fragment_point_into_its_blocks() {
        use yrs::{XmlElementPrelim, XmlFragment, XmlTextPrelim};
        let doc = yrs::Doc::new();
        let fragment = doc.get_or_insert_xml_fragment("default");
        {
            let mut txn = doc.transact_mut();
            for line in ["first block", "second block"] {
                let p = fragment.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
                p.push_back(&mut txn, XmlTextPrelim::new(line));
            }
        }
        assert_eq!(text_of(&doc), "first block\nsecond block");
        let (a, b) = anchor_range(&doc, 12, 18).expect("an anchor in the second block");
        assert_eq!(resolve_anchor(&doc, &a, &b).unwrap().2, "second");
        // Across blocks, too.
        let (a, b) = anchor_range(&doc, 6, 18).expect("an anchor across blocks");
        assert_eq!(resolve_anchor(&doc, &a, &b).unwrap().2, "block\nsecond");
    }
}
