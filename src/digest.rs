//! E-mail digests: a member who opted in (`notification_preferences.email_mentions`,
//! `email_replies`, `email_membership`) is mailed what stayed unread for
//! `smtp.digest_delay_secs`, one mail per round with everything due, plain text and HTML,
//! with a one-click unsubscribe link (a signed token; `List-Unsubscribe` and
//! `List-Unsubscribe-Post`). Driven from the notifications table, not from memory: each node
//! takes due notifications in one statement (so each goes into one digest in a cluster), and
//! a node that dies between taking and sending leaves a claim that expires and is taken
//! again. Without `smtp.url` it does not run, and says so at start-up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::now_ms;
use crate::mail::{Mail, Mailer};
use crate::store::{DigestItem, Store};

/// Notifications taken per round.
const PER_ROUND: u32 = 500;
/// A claim older than this is a node that died sending.
const CLAIM_TTL: Duration = Duration::from_secs(300);
/// Lines of one digest (the rest are counted).
const MAX_LINES: usize = 50;

/// Which preference covers a notification kind.
fn wanted(preferences: &serde_json::Value, kind: &str) -> bool {
    let key = match kind {
        "mention" => "email_mentions",
        "reply" => "email_replies",
        "member_added" | "role_changed" => "email_membership",
        _ => return false,
    };
    preferences
        .get(key)
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

/// The signed token of `user`'s unsubscribe link: HMAC-SHA256 of the user id under a key
/// derived from the server's secret, hex.
pub fn unsubscribe_token(key: &[u8], user: i64) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(b"stoa unsubscribe\0");
    mac.update(user.to_string().as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `token` is `user`'s (constant-time).
pub fn unsubscribe_token_valid(key: &[u8], user: i64, token: &str) -> bool {
    let want = unsubscribe_token(key, user);
    want.len() == token.len()
        && want
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// One line of a digest.
fn line(item: &DigestItem) -> String {
    let n = &item.notification;
    let body = n.data.get("body").and_then(|b| b.as_str()).map(|b| {
        let short: String = b.chars().take(140).collect();
        if short.len() < b.len() {
            format!(": “{short}…”")
        } else {
            format!(": “{short}”")
        }
    });
    let what = match n.kind.as_str() {
        "mention" => "You were mentioned in a comment",
        "reply" => "Someone replied to your comment",
        "member_added" => "You were added to a workspace",
        "role_changed" => "Your role in a workspace changed",
        _ => "Something happened",
    };
    format!("- {what}{}", body.unwrap_or_default())
}

/// The digest of one user's due notifications.
pub fn digest_mail(public_url: &str, key: &[u8], items: &[&DigestItem]) -> Option<Mail> {
    let first = items.first()?;
    let user = first.notification.user_id;
    let unsubscribe = format!(
        "{public_url}/api/v1/unsubscribe?user={user}&token={}",
        unsubscribe_token(key, user)
    );
    let mut by_workspace: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for item in items.iter().take(MAX_LINES) {
        by_workspace
            .entry(item.notification.workspace_id)
            .or_default()
            .push(line(item));
    }
    let mut text = format!("Hello {},\n\n", first.display_name);
    text.push_str(&format!(
        "{} unread notification{} in Stoa:\n",
        items.len(),
        if items.len() == 1 { "" } else { "s" }
    ));
    for (ws, lines) in &by_workspace {
        text.push_str(&format!("\nIn {public_url}/w/{ws}\n"));
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
    }
    if items.len() > MAX_LINES {
        text.push_str(&format!("\n…and {} more.\n", items.len() - MAX_LINES));
    }
    text.push_str(&format!("\nTo stop these mails: {unsubscribe}\n"));
    Some(Mail {
        to: first.email.clone(),
        subject: format!(
            "{} unread notification{} in Stoa",
            items.len(),
            if items.len() == 1 { "" } else { "s" }
        ),
        text,
        unsubscribe: Some(unsubscribe),
    })
}

/// What the digest task needs.
pub struct Digests {
    pub store: Arc<dyn Store>,
    pub mailer: Mailer,
    pub delay: Duration,
    pub every: Duration,
    pub public_url: String,
    pub key: Vec<u8>,
    pub realtime: crate::realtime::Realtime,
}

impl Digests {
    /// Runs until the node shuts down.
    pub async fn run(self) {
        while !self.realtime.is_shutting_down() {
            match self.round().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read notifications to mail"),
            }
            tokio::time::sleep(self.every).await;
        }
    }

    /// Mails every digest that is due; whether there may be more.
    pub async fn round(&self) -> Result<bool, crate::store::StoreError> {
        let now = now_ms();
        let delay = i64::try_from(self.delay.as_millis()).unwrap_or(i64::MAX);
        let ttl = i64::try_from(CLAIM_TTL.as_millis()).unwrap_or(i64::MAX);
        let items = self
            .store
            .claim_digest_notifications(now, now - delay, now - ttl, PER_ROUND)
            .await?;
        let full = items.len() == PER_ROUND as usize;
        let mut not_wanted = Vec::new();
        let mut by_user: BTreeMap<i64, Vec<&DigestItem>> = BTreeMap::new();
        for item in &items {
            if wanted(&item.preferences, &item.notification.kind) {
                by_user
                    .entry(item.notification.user_id)
                    .or_default()
                    .push(item);
            } else {
                not_wanted.push(item.notification.id);
            }
        }
        self.store.notifications_mailed(&not_wanted, now).await?;
        for items in by_user.values() {
            let ids: Vec<i64> = items.iter().map(|i| i.notification.id).collect();
            let Some(mail) = digest_mail(&self.public_url, &self.key, items) else {
                continue;
            };
            match self.mailer.send_now(&mail).await {
                Ok(()) => self.store.notifications_mailed(&ids, now_ms()).await?,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot send a digest; it is tried again");
                    self.store.release_digest_claims(&ids).await?;
                }
            }
        }
        Ok(full)
    }
}
