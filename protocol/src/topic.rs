//! Channel topics: `workspace:{id}`, `document:{id}` and `user:{id}`.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    Workspace(i64),
    Document(i64),
    User(i64),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("unknown topic {0:?}: expected workspace:ID, document:ID or user:ID")]
    Unknown(String),
}

impl Topic {
    pub fn parse(s: &str) -> Result<Topic, TopicError> {
        let unknown = || TopicError::Unknown(s.chars().take(64).collect());
        let (kind, id) = s.split_once(':').ok_or_else(unknown)?;
        // Canonical decimal only: "workspace:007" and "workspace:+7" would otherwise name
        // the same topic as "workspace:7" under another string.
        if id.is_empty() || id.len() > 18 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(unknown());
        }
        if id.len() > 1 && id.starts_with('0') {
            return Err(unknown());
        }
        let id: i64 = id.parse().map_err(|_| unknown())?;
        match kind {
            "workspace" => Ok(Topic::Workspace(id)),
            "document" => Ok(Topic::Document(id)),
            "user" => Ok(Topic::User(id)),
            _ => Err(unknown()),
        }
    }

    pub fn id(self) -> i64 {
        match self {
            Topic::Workspace(id) | Topic::Document(id) | Topic::User(id) => id,
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Workspace(id) => write!(f, "workspace:{id}"),
            Topic::Document(id) => write!(f, "document:{id}"),
            Topic::User(id) => write!(f, "user:{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for t in [
            Topic::Workspace(1),
            Topic::Document(42),
            Topic::User(999_999_999),
        ] {
            assert_eq!(Topic::parse(&t.to_string()), Ok(t));
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "workspace",
            "workspace:",
            "workspace:x",
            "workspace:-1",
            "workspace:+1",
            "workspace:01",
            "room:1",
            "workspace:1:2",
            "workspace:99999999999999999999",
            "WORKSPACE:1",
            "phoenix",
            "document: 1",
        ] {
            assert!(Topic::parse(bad).is_err(), "{bad}");
        }
    }
}
