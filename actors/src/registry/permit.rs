//! A user's admitted sockets: the permit each socket holds while it lives.

use super::*;

/// Why a socket was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The user has `max_sockets_per_user` open on this node.
    TooManySockets,
    /// The user is over their message rate.
    RateLimited,
}

/// One admitted socket of a user; the session holds it for as long as it lives.
pub struct SocketPermit {
    pub(super) shared: Arc<Shared>,
    pub(super) user: i64,
    pub(super) token: crate::TokenTag,
}

impl SocketPermit {
    pub fn user(&self) -> i64 {
        self.user
    }

    /// The socket was opened with a token of this login, issued then: a session end that
    /// covers it closes the socket.
    pub fn with_token(mut self, token: crate::TokenTag) -> SocketPermit {
        self.token = token;
        self
    }

    pub(crate) fn token(&self) -> crate::TokenTag {
        self.token.clone()
    }
}

impl Drop for SocketPermit {
    fn drop(&mut self) {
        self.shared.users.remove_if_mut(&self.user, |_, open| {
            *open = open.saturating_sub(1);
            *open == 0
        });
    }
}
