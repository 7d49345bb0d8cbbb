//! `@mentions` in comment bodies. A mention is `@` followed by an e-mail address, at the
//! start of the body or after a character that cannot be part of an address, for example
//! "thanks @alice@example.com!". Parsing yields normalised (lower-case) addresses; the store
//! keeps only those that belong to members of the workspace, so a mention reveals nothing
//! about who else has an account.

use std::collections::BTreeSet;

fn is_address_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-' | '@')
}

pub fn parse_mentions(body: &str) -> Vec<String> {
    let mut found = BTreeSet::new();
    let chars: Vec<(usize, char)> = body.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (_, c) = chars[i];
        let starts_word = i == 0 || !is_address_char(chars[i - 1].1);
        if c == '@' && starts_word {
            let start = i + 1;
            let mut end = start;
            while end < chars.len() && is_address_char(chars[end].1) {
                end += 1;
            }
            let byte_start = chars.get(start).map_or(body.len(), |(b, _)| *b);
            let byte_end = chars.get(end).map_or(body.len(), |(b, _)| *b);
            // Trailing punctuation ends a sentence, not an address.
            let candidate = body[byte_start..byte_end].trim_end_matches(['.', '-', '_']);
            if let Ok(email) = super::Email::parse(candidate) {
                found.insert(email.key().to_string());
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_addresses_after_at() {
        assert_eq!(
            parse_mentions("hi @Alice@Example.com and @bob@example.org."),
            vec!["alice@example.com", "bob@example.org"]
        );
    }

    #[test]
    fn ignores_plain_addresses_and_duplicates() {
        assert_eq!(
            parse_mentions("mail alice@example.com, ping @carol@x.io @carol@x.io"),
            vec!["carol@x.io"]
        );
        assert!(parse_mentions("@ nothing @notanemail").is_empty());
    }

    #[test]
    fn survives_arbitrary_unicode() {
        assert!(parse_mentions("é@ü @ @@ @é@ü.ß 🎉@").len() <= 1);
        // Accounts have ASCII addresses, so only those can be mentioned.
        assert!(parse_mentions("(@dé@exä.com)").is_empty());
        assert_eq!(parse_mentions("(@de@exa.com)"), vec!["de@exa.com"]);
    }
}
