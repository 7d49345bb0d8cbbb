//! What a user types into search, parsed into a small query that every backend can run
//! without interpreting the user's text: words, `"phrases"`, `prefix*`, `-excluded` and
//! `OR` between alternatives. Every other character separates words, so quotes left open,
//! stray operators, parentheses, colons and the like can never reach a backend's own query
//! syntax. Words are what both SQL backends' tokenizers make of text: runs of letters and
//! digits, lower-cased.
//!
//! Also here: the highlighted snippet of a hit, made from the text itself, so that it is the
//! same whichever backend found the hit.
use super::Invalid;

/// Longest query text accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 512;
/// Most words in a query (all alternatives together).
pub const MAX_QUERY_WORDS: usize = 32;
/// Characters a prefix (`plan*`) needs before its star.
pub const MIN_PREFIX_CHARS: usize = 2;
/// Characters of a document's text that are indexed and searched (the rest is stored and
/// served, but not found by search).
pub const SEARCHABLE_CHARS: usize = 100_000;

/// A run of words that must appear in this order (one word: just that word); `prefix`: the
/// last word may be the start of a longer one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phrase {
    pub words: Vec<String>,
    pub prefix: bool,
}

/// Phrases that must all match (`include`) and none of which may (`exclude`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Group {
    pub include: Vec<Phrase>,
    pub exclude: Vec<Phrase>,
}

/// Alternatives: a hit matches at least one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    pub groups: Vec<Group>,
}

/// The words of a text as the index sees them: byte ranges of letter-and-digit runs.
pub fn word_spans(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut chars = text.char_indices().peekable();
    std::iter::from_fn(move || {
        while let Some(&(_, c)) = chars.peek() {
            if c.is_alphanumeric() {
                break;
            }
            chars.next();
        }
        let (start, _) = *chars.peek()?;
        let mut end = start;
        while let Some(&(i, c)) = chars.peek() {
            if !c.is_alphanumeric() {
                break;
            }
            end = i + c.len_utf8();
            chars.next();
        }
        Some((start, end))
    })
}

fn words(text: &str) -> Vec<String> {
    word_spans(text)
        .map(|(s, e)| text[s..e].to_lowercase())
        .collect()
}

impl SearchQuery {
    /// Parses what a user typed; `Err` says why nothing can be searched.
    pub fn parse(text: &str) -> Result<SearchQuery, Invalid> {
        if text.len() > MAX_QUERY_BYTES {
            return Err(Invalid::from(format!(
                "the query is longer than {MAX_QUERY_BYTES} bytes"
            )));
        }
        let mut groups = vec![Group::default()];
        let mut rest = text;
        let mut count = 0;
        loop {
            rest = rest.trim_start_matches(|c: char| c.is_whitespace());
            if rest.is_empty() {
                break;
            }
            let negated = rest.starts_with('-');
            if negated {
                rest = &rest[1..];
            }
            // A quoted phrase runs to the next quote (or the end, if the quote is not closed).
            let (raw, after) = if let Some(body) = rest.strip_prefix('"') {
                match body.find('"') {
                    Some(end) => (&body[..end], &body[end + 1..]),
                    None => (body, ""),
                }
            } else {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            };
            let mut prefix = after.starts_with('*') || raw.ends_with('*');
            let after = after.strip_prefix('*').unwrap_or(after);
            rest = after;
            if !negated && raw == "OR" {
                if !groups
                    .last()
                    .is_some_and(|g| g.include.is_empty() && g.exclude.is_empty())
                {
                    groups.push(Group::default());
                }
                continue;
            }
            let ws = words(raw);
            if ws.is_empty() {
                continue;
            }
            // `foo*bar` is two words; only a trailing star makes a prefix.
            prefix &= raw
                .trim_end_matches('*')
                .ends_with(|c: char| c.is_alphanumeric());
            if prefix
                && ws
                    .last()
                    .is_some_and(|w| w.chars().count() < MIN_PREFIX_CHARS)
            {
                // `a*` matches nearly every text: ranking them all is a query any user could
                // repeat to take the database's time.
                return Err(Invalid::from(format!(
                    "a prefix needs at least {MIN_PREFIX_CHARS} characters before the *"
                )));
            }
            count += ws.len();
            if count > MAX_QUERY_WORDS {
                return Err(Invalid::from(format!(
                    "the query has more than {MAX_QUERY_WORDS} words"
                )));
            }
            let phrase = Phrase { words: ws, prefix };
            let group = groups.last_mut().expect("one group at least");
            if negated {
                group.exclude.push(phrase);
            } else {
                group.include.push(phrase);
            }
        }
        groups.retain(|g| !(g.include.is_empty() && g.exclude.is_empty()));
        if groups.is_empty() {
            return Err(Invalid::from("the query has no words to search for"));
        }
        if groups.iter().any(|g| g.include.is_empty()) {
            return Err(Invalid::from(
                "every alternative needs a word that is not excluded",
            ));
        }
        Ok(SearchQuery { groups })
    }

    /// SQLite FTS5 query syntax. Words are quoted, and a word holds only letters and digits,
    /// so nothing in it is FTS5 syntax.
    pub fn to_fts5(&self) -> String {
        let phrase = |p: &Phrase| {
            format!(
                "\"{}\"{}",
                p.words.join(" "),
                if p.prefix { " *" } else { "" }
            )
        };
        self.groups
            .iter()
            .map(|g| {
                let mut s = g
                    .include
                    .iter()
                    .map(phrase)
                    .collect::<Vec<_>>()
                    .join(" AND ");
                for p in &g.exclude {
                    s = format!("({s}) NOT {}", phrase(p));
                }
                format!("({s})")
            })
            .collect::<Vec<_>>()
            .join(" OR ")
    }

    /// PostgreSQL `to_tsquery` syntax (the `simple` configuration). Each word is quoted as a
    /// lexeme and holds only letters and digits.
    pub fn to_tsquery(&self) -> String {
        let phrase = |p: &Phrase| {
            let last = p.words.len() - 1;
            let parts: Vec<String> = p
                .words
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let star = if p.prefix && i == last { ":*" } else { "" };
                    format!("'{w}'{star}")
                })
                .collect();
            format!("({})", parts.join(" <-> "))
        };
        self.groups
            .iter()
            .map(|g| {
                let mut parts: Vec<String> = g.include.iter().map(phrase).collect();
                parts.extend(g.exclude.iter().map(|p| format!("!{}", phrase(p))));
                format!("({})", parts.join(" & "))
            })
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// Whether a word of a text (lower-cased) is one the query looks for, for highlighting.
    pub fn highlights(&self, word: &str) -> bool {
        self.groups.iter().flat_map(|g| &g.include).any(|p| {
            let last = p.words.len() - 1;
            p.words
                .iter()
                .enumerate()
                .any(|(i, w)| word == w || (p.prefix && i == last && word.starts_with(w.as_str())))
        })
    }
}

/// Text as HTML: `<`, `>`, `&` and quotes escaped.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
}

/// Words of context shown around the first highlighted word.
const SNIPPET_WORDS: usize = 24;

/// A piece of `text` around its first word the query looks for, HTML-escaped, with every
/// such word in `<mark>…</mark>` and `…` where it was cut; `None` if no word is highlighted.
pub fn snippet(query: &SearchQuery, text: &str) -> Option<String> {
    let text = match text.char_indices().nth(SEARCHABLE_CHARS) {
        Some((cut, _)) => &text[..cut],
        None => text,
    };
    let spans: Vec<(usize, usize)> = word_spans(text).collect();
    let hit = |&(s, e): &(usize, usize)| query.highlights(&text[s..e].to_lowercase());
    let first = spans.iter().position(hit)?;
    let from = first.saturating_sub(SNIPPET_WORDS / 3);
    let to = (from + SNIPPET_WORDS).min(spans.len());
    let start = if from == 0 { 0 } else { spans[from].0 };
    let end_byte = if to == spans.len() {
        text.len()
    } else {
        spans[to - 1].1
    };
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    let mut at = start;
    for span in &spans[from..to] {
        escape_into(&mut out, &text[at..span.0]);
        let word = &text[span.0..span.1];
        if hit(span) {
            out.push_str("<mark>");
            escape_into(&mut out, word);
            out.push_str("</mark>");
        } else {
            escape_into(&mut out, word);
        }
        at = span.1;
    }
    escape_into(&mut out, &text[at..end_byte]);
    if end_byte < text.len() {
        out.push('…');
    }
    Some(out.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> SearchQuery {
        SearchQuery::parse(text).unwrap()
    }

    #[test]
    fn words_phrases_prefixes_exclusions_and_alternatives() {
        assert_eq!(q("Hello world").to_fts5(), "(\"hello\" AND \"world\")");
        assert_eq!(
            q("\"road map\" plan*").to_fts5(),
            "(\"road map\" AND \"plan\" *)"
        );
        assert_eq!(q("alpha -beta").to_fts5(), "((\"alpha\") NOT \"beta\")");
        assert_eq!(q("a OR b c").to_fts5(), "(\"a\") OR (\"b\" AND \"c\")");
        assert_eq!(q("don't").to_tsquery(), "(('don' <-> 't'))");
        assert_eq!(
            q("road* -\"x y\"").to_tsquery(),
            "(('road':*) & !('x' <-> 'y'))"
        );
        assert_eq!(q("a OR b").to_tsquery(), "(('a')) | (('b'))");
        assert_eq!(q("Ünïcode 東京").groups[0].include.len(), 2);
    }

    #[test]
    fn a_prefix_needs_two_characters() {
        for short in ["a*", "plan x*", "\"road m\"*", "-b* a", "é*"] {
            let err = SearchQuery::parse(short).unwrap_err();
            assert!(err.0.contains("at least 2 characters"), "{short:?}: {err}");
        }
        for fine in ["ab*", "x ab*", "\"road ma\"*", "東京*", "a"] {
            assert!(SearchQuery::parse(fine).is_ok(), "{fine:?}");
        }
    }

    #[test]
    fn hostile_text_never_reaches_a_backend_as_syntax() {
        for text in [
            "\"unclosed phrase",
            "a AND OR NOT b",
            "NEAR(a b) col:val ^start",
            "' OR 1=1 --",
            "a:* & !b | c <-> d",
            "((((((a",
            "*ab* **",
            "a\u{0}b",
            "OR OR x OR",
        ] {
            let parsed = q(text);
            for phrase in parsed
                .groups
                .iter()
                .flat_map(|g| g.include.iter().chain(&g.exclude))
            {
                for w in &phrase.words {
                    assert!(w.chars().all(char::is_alphanumeric), "{text:?} gave {w:?}");
                }
            }
        }
        for empty in ["", "   ", "\"\"", "-only", "*", "OR", "-a OR b", "!!! ???"] {
            assert!(SearchQuery::parse(empty).is_err(), "{empty:?}");
        }
        assert!(SearchQuery::parse(&"a ".repeat(40)).is_err());
        assert!(SearchQuery::parse(&"a".repeat(600)).is_err());
    }

    #[test]
    fn snippets_mark_matches_escape_html_and_cut_long_text() {
        let query = q("plan*");
        assert_eq!(
            snippet(&query, "The <b>plan</b> & planning").as_deref(),
            Some("The &lt;b&gt;<mark>plan</mark>&lt;/b&gt; &amp; <mark>planning</mark>")
        );
        assert_eq!(snippet(&query, "nothing here"), None);
        let long = format!("{} plan {}", "word ".repeat(100), "tail ".repeat(100));
        let s = snippet(&query, &long).unwrap();
        assert!(s.starts_with('…') && s.ends_with('…'), "{s}");
        assert_eq!(s.matches("<mark>").count(), 1);
        assert!(s.split_whitespace().count() <= SNIPPET_WORDS + 2, "{s}");
    }
}
