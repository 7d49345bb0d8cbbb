//! The storage conformance suite: the same checks through the `Store` trait on every
//! backend, below the HTTP layer.

#[path = "../common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{Backend, TestDb};
use futures_util::future::join_all;
use stoa::config::Settings;
use stoa::domain::{CommentBody, DisplayName, DocumentTitle, Email, Role, WorkspaceName};
use stoa::store::prelude::*;
use stoa::store::{
    CommentPatch, DocumentPatch, MemberRef, PageRequest, Rotation, SqlStore, StoreError, User,
};

on_every_backend!(
    concurrent_refresh_of_one_token_lets_exactly_one_win,
    a_spent_token_presented_again_soon_gets_the_same_successor,
    a_replay_racing_a_rotation_leaves_no_live_token,
    expired_and_long_spent_refresh_tokens_are_pruned,
    refused_changes_do_not_consume_offsets,
    data_survives_reconnecting,
    deleting_a_workspace_removes_everything_in_it,
    emails_are_unique_and_version_checks_hold,
    a_comment_mentioning_many_members_notifies_each_member_once,
    unread_counts_of_several_users_come_in_one_call,
    an_event_page_never_disagrees_with_its_latest_offset,
    every_foreign_key_column_is_indexed,
    document_updates_load_in_order_compact_and_go_with_their_document,
    live_edits_are_recorded_once_whoever_records_them,
    role_claims_apply_in_issue_order_and_take_back_only_their_own,
    single_sign_on_links_by_proved_address_and_flows_are_taken_once,
    a_document_is_indexed_again_only_when_its_words_change,
);

/// Single sign-on: a verified account is linked and keeps its password and logins; an
/// unverified one is claimed (password and logins end); a flow is taken once, unexpired;
/// a workspace rule names its members' domain; logins not of the provider end.
async fn single_sign_on_links_by_proved_address_and_flows_are_taken_once(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = open(&db).await;
    let issuer = "https://idp.example.com";
    let far = stoa::domain::now_ms() + 3_600_000;
    // Proved here before: linked, nothing ends.
    let proved = user(&store, "proved").await;
    store
        .issue_email_token(
            proved.id,
            "verify_email",
            "proved@example.com",
            "digest-1",
            far,
        )
        .await
        .unwrap();
    assert!(store.verify_email("digest-1").await.unwrap().is_some());
    store
        .insert_refresh_token(proved.id, "fam-proved", "p0", far, None)
        .await
        .unwrap();
    let email = Email::parse("proved@example.com").unwrap();
    let (linked, ended) = store
        .sso_user(issuer, "sub-proved", Some(&email), None)
        .await
        .unwrap();
    assert_eq!(linked.id, proved.id);
    assert!(ended.is_none());
    assert!(store
        .password_hash(proved.id)
        .await
        .unwrap()
        .is_some_and(|h| h.starts_with('$')));
    // Found by subject from now on, whatever the address says.
    let (again, _) = store
        .sso_user(issuer, "sub-proved", None, None)
        .await
        .unwrap();
    assert_eq!(again.id, proved.id);

    // Never proved: claimed.
    let squatter = user(&store, "squat").await;
    store
        .insert_refresh_token(squatter.id, "fam-squat", "s0", far, None)
        .await
        .unwrap();
    let email = Email::parse("squat@example.com").unwrap();
    let (claimed, ended) = store
        .sso_user(issuer, "sub-squat", Some(&email), None)
        .await
        .unwrap();
    assert_eq!(claimed.id, squatter.id);
    assert!(claimed.email_verified);
    let ended = ended.expect("the squatter's logins end");
    assert_eq!(ended.reason, "account_claimed");
    assert!(!store
        .password_hash(squatter.id)
        .await
        .unwrap()
        .is_some_and(|h| h.starts_with('$')));
    assert!(matches!(
        store
            .rotate_refresh_token("s0", "s1", far, 0)
            .await
            .unwrap(),
        Rotation::Invalid
    ));

    // A flow is taken once, and not after it expires.
    let flow = |id: &str, expires_at: i64| stoa::store::OidcFlow {
        id: id.into(),
        kind: "state".into(),
        provider: "okta".into(),
        browser: "b".into(),
        nonce: Some("n".into()),
        verifier: Some("v".into()),
        next_path: None,
        user_id: None,
        expires_at,
    };
    store.insert_oidc_flow(&flow("f1", far)).await.unwrap();
    let now = stoa::domain::now_ms();
    assert_eq!(
        store.take_oidc_flow("f1", "handoff", now).await.unwrap(),
        None
    );
    assert_eq!(
        store.take_oidc_flow("f1", "state", now).await.unwrap(),
        Some(flow("f1", far))
    );
    assert_eq!(
        store.take_oidc_flow("f1", "state", now).await.unwrap(),
        None
    );
    store.insert_oidc_flow(&flow("f2", now + 1)).await.unwrap();
    assert_eq!(
        store.take_oidc_flow("f2", "state", now + 2).await.unwrap(),
        None
    );

    // A workspace rule covers its members of the domain; their other logins end.
    let (ws, _, _) = store
        .create_workspace(proved.id, &name("Acme"), None)
        .await
        .unwrap();
    assert_eq!(store.sso_requirement(proved.id).await.unwrap(), None);
    store
        .set_workspace_sso(ws.id, Some(("okta", &["example.com".to_string()])))
        .await
        .unwrap();
    assert_eq!(
        store.sso_requirement(proved.id).await.unwrap().as_deref(),
        Some("okta")
    );
    assert_eq!(
        store.sso_requirement(squatter.id).await.unwrap(),
        None,
        "not a member"
    );
    store
        .insert_refresh_token(proved.id, "fam-okta", "o0", far, Some("oidc:okta"))
        .await
        .unwrap();
    let ends = store
        .end_sessions_not_by(proved.id, "oidc:okta", "sso_required")
        .await
        .unwrap();
    assert_eq!(
        ends.iter().map(|e| e.session.clone()).collect::<Vec<_>>(),
        [Some("fam-proved".to_string())]
    );
    assert_eq!(
        store
            .session_info("fam-okta")
            .await
            .unwrap()
            .unwrap()
            .method
            .as_deref(),
        Some("oidc:okta")
    );
    store.set_workspace_sso(ws.id, None).await.unwrap();
    assert_eq!(store.sso_requirement(proved.id).await.unwrap(), None);
}

/// Role claims: applied in the order tokens were issued, only by the issuer that knows
/// the account, and taking back only what claims granted.
async fn role_claims_apply_in_issue_order_and_take_back_only_their_own(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = open(&db).await;
    let (w1, _) = store
        .directory_workspace("w1", &name("One"), None)
        .await
        .unwrap();
    let (w2, _) = store
        .directory_workspace("w2", &name("Two"), None)
        .await
        .unwrap();
    let ada = store
        .external_user("product", "ada", None, None)
        .await
        .unwrap();
    let roles = |list: &[(&str, Role)]| -> Vec<(String, Role)> {
        list.iter().map(|(w, r)| (w.to_string(), *r)).collect()
    };
    let member_of = |ws: i64| {
        let store = &store;
        async move { store.role(ada.id, ws).await.ok() }
    };
    store
        .apply_role_claims(
            ada.id,
            "product",
            "ada",
            &roles(&[("w1", Role::Editor)]),
            1000,
        )
        .await
        .unwrap();
    // Another issuer's claims for this account change nothing: it is not theirs.
    let foreign = store
        .apply_role_claims(
            ada.id,
            "ldap:dc",
            "ada",
            &roles(&[("w2", Role::Viewer)]),
            2000,
        )
        .await
        .unwrap();
    assert!(foreign.is_empty());
    assert_eq!(member_of(w1.id).await, Some(Role::Editor));
    assert_eq!(member_of(w2.id).await, None);
    // An older product token changes nothing; a newer one without w1 takes it back.
    store
        .apply_role_claims(ada.id, "product", "ada", &roles(&[]), 500)
        .await
        .unwrap();
    assert_eq!(member_of(w1.id).await, Some(Role::Editor));
    let changes = store
        .apply_role_claims(
            ada.id,
            "product",
            "ada",
            &roles(&[("w2", Role::Viewer)]),
            3000,
        )
        .await
        .unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(member_of(w1.id).await, None);
    assert_eq!(member_of(w2.id).await, Some(Role::Viewer));
    // A membership granted in Stoa is the claims' only when they name its workspace.
    let owner = user(&store, "owner").await;
    let (w3, _, _) = store
        .create_workspace(owner.id, &name("Three"), None)
        .await
        .unwrap();
    store
        .add_member(owner.id, w3.id, &MemberRef::Id(ada.id), Role::Editor)
        .await
        .unwrap();
    store
        .apply_role_claims(ada.id, "product", "ada", &roles(&[]), 4000)
        .await
        .unwrap();
    assert_eq!(member_of(w3.id).await, Some(Role::Editor));
    assert_eq!(member_of(w2.id).await, None);
}

async fn open(db: &TestDb) -> SqlStore {
    let mut settings = Settings::load_with_env(None, Vec::new()).expect("defaults");
    settings.database.url = db.url.clone();
    settings.database.max_connections = 8;
    SqlStore::connect(&settings.database)
        .await
        .expect("store opens")
}

async fn user(store: &dyn Store, name: &str) -> User {
    store
        .create_user(
            &Email::parse(&format!("{name}@example.com")).unwrap(),
            &DisplayName::parse(name).unwrap(),
            "$argon2id$not-a-real-hash",
        )
        .await
        .expect("user")
}

fn name(s: &str) -> WorkspaceName {
    WorkspaceName::parse(s).unwrap()
}

async fn concurrent_refresh_of_one_token_lets_exactly_one_win(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(open(&db).await);
    let alice = user(store.as_ref(), "alice").await;
    let far = stoa::domain::now_ms() + 3_600_000;
    store
        .insert_refresh_token(alice.id, "family-1", "hash-0", far, None)
        .await
        .unwrap();
    let attempts = (0..8).map(|i| {
        let store = store.clone();
        async move {
            store
                .rotate_refresh_token("hash-0", &format!("hash-{}", i + 1), far, 0)
                .await
                .unwrap()
        }
    });
    let outcomes = join_all(attempts).await;
    let wins = outcomes
        .iter()
        .filter(|o| matches!(o, Rotation::Rotated { .. }))
        .count();
    assert_eq!(wins, 1, "{outcomes:?}");
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, Rotation::Rotated { .. } | Rotation::Reused { .. })));
    // Reuse revoked the family, including the winner's new token.
    for i in 1..=8 {
        let again = store
            .rotate_refresh_token(&format!("hash-{i}"), "hash-x", far, 0)
            .await
            .unwrap();
        assert!(!matches!(again, Rotation::Rotated { .. }), "{again:?}");
    }
    assert_eq!(
        store
            .rotate_refresh_token("unknown", "h", far, 0)
            .await
            .unwrap(),
        Rotation::Invalid
    );
    store
        .insert_refresh_token(
            alice.id,
            "family-2",
            "expired",
            stoa::domain::now_ms() - 1,
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .rotate_refresh_token("expired", "h2", far, 0)
            .await
            .unwrap(),
        Rotation::Invalid
    );
}

const GRACE: i64 = 10_000;

async fn a_spent_token_presented_again_soon_gets_the_same_successor(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = open(&db).await;
    let alice = user(&store, "alice").await;
    let far = stoa::domain::now_ms() + 3_600_000;
    store
        .insert_refresh_token(alice.id, "fam", "t0", far, None)
        .await
        .unwrap();
    let rotated = Rotation::Rotated {
        user_id: alice.id,
        family_id: "fam".into(),
    };
    assert_eq!(
        store
            .rotate_refresh_token("t0", "t1", far, GRACE)
            .await
            .unwrap(),
        rotated
    );
    // Two tabs, or a retry after a lost response: the same successor, nothing revoked.
    assert_eq!(
        store
            .rotate_refresh_token("t0", "t1", far, GRACE)
            .await
            .unwrap(),
        rotated
    );
    // Asking for a different successor is not the honest race: the login is revoked.
    assert!(matches!(
        store
            .rotate_refresh_token("t0", "t9", far, GRACE)
            .await
            .unwrap(),
        Rotation::Reused { .. }
    ));
    assert_eq!(
        store
            .rotate_refresh_token("t1", "t2", far, GRACE)
            .await
            .unwrap(),
        Rotation::Invalid
    );

    // Once the successor itself was used, the old token is a replay.
    store
        .insert_refresh_token(alice.id, "fam2", "u0", far, None)
        .await
        .unwrap();
    store
        .rotate_refresh_token("u0", "u1", far, GRACE)
        .await
        .unwrap();
    assert_eq!(
        store
            .rotate_refresh_token("u1", "u2", far, GRACE)
            .await
            .unwrap(),
        Rotation::Rotated {
            user_id: alice.id,
            family_id: "fam2".into()
        }
    );
    assert!(matches!(
        store
            .rotate_refresh_token("u0", "u1", far, GRACE)
            .await
            .unwrap(),
        Rotation::Reused { .. }
    ));
    assert_eq!(
        store
            .rotate_refresh_token("u2", "u3", far, GRACE)
            .await
            .unwrap(),
        Rotation::Invalid
    );

    // With no interval, presenting a spent token again is always a replay.
    store
        .insert_refresh_token(alice.id, "fam3", "v0", far, None)
        .await
        .unwrap();
    store
        .rotate_refresh_token("v0", "v1", far, 0)
        .await
        .unwrap();
    assert!(matches!(
        store
            .rotate_refresh_token("v0", "v1", far, 0)
            .await
            .unwrap(),
        Rotation::Reused { .. }
    ));
}

async fn a_replay_racing_a_rotation_leaves_no_live_token(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(open(&db).await);
    let alice = user(store.as_ref(), "alice").await;
    let far = stoa::domain::now_ms() + 3_600_000;
    for round in 0..30 {
        let fam = format!("race-{round}");
        let (t0, t1, t2) = (format!("{fam}-0"), format!("{fam}-1"), format!("{fam}-2"));
        store
            .insert_refresh_token(alice.id, &fam, &t0, far, None)
            .await
            .unwrap();
        store.rotate_refresh_token(&t0, &t1, far, 0).await.unwrap();
        // The holder of t1 rotates while a thief replays t0.
        let (a, b) = tokio::join!(
            store.rotate_refresh_token(&t1, &t2, far, 0),
            store.rotate_refresh_token(&t0, "thief", far, 0)
        );
        assert!(
            matches!(b.unwrap(), Rotation::Reused { .. }),
            "round {round}"
        );
        let _ = a.unwrap();
        // Whichever committed first, the login is over: t2 (if it was issued) is dead.
        let after = store
            .rotate_refresh_token(&t2, &format!("{fam}-3"), far, 0)
            .await
            .unwrap();
        assert_eq!(
            after,
            Rotation::Invalid,
            "round {round}: t2 survived the replay"
        );
    }
}

async fn expired_and_long_spent_refresh_tokens_are_pruned(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = open(&db).await;
    let alice = user(&store, "alice").await;
    let now = stoa::domain::now_ms();
    let far = now + 3_600_000;
    store
        .insert_refresh_token(alice.id, "old", "expired", now - 1, None)
        .await
        .unwrap();
    store
        .insert_refresh_token(alice.id, "live", "a", far, None)
        .await
        .unwrap();
    store.rotate_refresh_token("a", "b", far, 0).await.unwrap();
    // Nothing spent before an hour ago: only the expired token goes.
    assert_eq!(
        store
            .prune_refresh_tokens(now, now - 3_600_000)
            .await
            .unwrap(),
        1
    );
    // Spent before a moment from now: the spent one goes too; the live one stays.
    let later = stoa::domain::now_ms() + 1;
    assert_eq!(store.prune_refresh_tokens(later, later).await.unwrap(), 1);
    assert_eq!(
        store.rotate_refresh_token("b", "c", far, 0).await.unwrap(),
        Rotation::Rotated {
            user_id: alice.id,
            family_id: "live".into()
        }
    );
    // A pruned spent token is simply unknown now.
    assert_eq!(
        store.rotate_refresh_token("a", "x", far, 0).await.unwrap(),
        Rotation::Invalid
    );
}

async fn refused_changes_do_not_consume_offsets(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = open(&db).await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let (ws, _, first) = store
        .create_workspace(alice.id, &name("Acme"), None)
        .await
        .unwrap();
    assert_eq!(first.offset, 1);
    store
        .add_member(alice.id, ws.id, &MemberRef::Id(bob.id), Role::Viewer)
        .await
        .unwrap();
    let title = DocumentTitle::parse("Plan").unwrap();
    let refused = store.create_document(bob.id, ws.id, &title, "").await;
    assert!(matches!(refused, Err(StoreError::Forbidden(_))));
    let outsider = user(&store, "carol").await;
    let hidden = store.create_document(outsider.id, ws.id, &title, "").await;
    assert!(matches!(hidden, Err(StoreError::NotFound(_))));
    let (doc, ev) = store
        .create_document(alice.id, ws.id, &title, "hi")
        .await
        .unwrap();
    assert_eq!(ev.offset, 3, "the refused attempts left no hole");
    let body = CommentBody::parse("looks good").unwrap();
    let (_, ev) = store
        .create_comment(alice.id, doc.id, None, &body, &[], None)
        .await
        .unwrap();
    assert_eq!(ev.offset, 4);
    let page = store.events(alice.id, ws.id, 0, 100).await.unwrap();
    let offsets: Vec<i64> = page.events.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, vec![1, 2, 3, 4]);
    assert_eq!(page.latest_offset, 4);
}

async fn data_survives_reconnecting(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let (alice_id, ws_id, doc_id) = {
        let store = open(&db).await;
        let alice = user(&store, "alice").await;
        let (ws, _, _) = store
            .create_workspace(alice.id, &name("Durable"), None)
            .await
            .unwrap();
        let (doc, _) = store
            .create_document(
                alice.id,
                ws.id,
                &DocumentTitle::parse("Kept").unwrap(),
                "body",
            )
            .await
            .unwrap();
        store.close().await;
        (alice.id, ws.id, doc.id)
    };
    let store = open(&db).await;
    let (doc, role) = store.document(alice_id, doc_id).await.unwrap();
    assert_eq!(role, Role::Owner);
    assert_eq!(doc.content.as_deref(), Some("body"));
    let page = store
        .workspaces_of(
            alice_id,
            PageRequest {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].0.id, ws_id);
    assert_eq!(page.items[0].0.last_offset, 2);
}

async fn deleting_a_workspace_removes_everything_in_it(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = open(&db).await;
    let alice = user(&store, "alice").await;
    let (ws, _, _) = store
        .create_workspace(alice.id, &name("Temp"), None)
        .await
        .unwrap();
    let (doc, _) = store
        .create_document(alice.id, ws.id, &DocumentTitle::parse("x").unwrap(), "")
        .await
        .unwrap();
    let (comment, _) = store
        .create_comment(
            alice.id,
            doc.id,
            None,
            &CommentBody::parse("c").unwrap(),
            &[],
            None,
        )
        .await
        .unwrap();
    store.delete_workspace(alice.id, ws.id).await.unwrap();
    assert!(matches!(
        store.document(alice.id, doc.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.comment(alice.id, comment.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.events(alice.id, ws.id, 0, 10).await,
        Err(StoreError::NotFound(_))
    ));
    // The same name can be used again; its slug is free once more.
    let (again, _, _) = store
        .create_workspace(alice.id, &name("Temp"), None)
        .await
        .unwrap();
    assert_eq!(again.slug, "temp");
}

async fn emails_are_unique_and_version_checks_hold(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = open(&db).await;
    let alice = user(&store, "alice").await;
    let dup = store
        .create_user(
            &Email::parse("ALICE@example.com").unwrap(),
            &DisplayName::parse("A").unwrap(),
            "h",
        )
        .await;
    assert!(matches!(
        dup,
        Err(StoreError::Conflict {
            code: "email_taken",
            ..
        })
    ));
    let found = store.user_credentials("alice@example.com").await.unwrap();
    assert_eq!(found.map(|(u, _)| u.id), Some(alice.id));

    let (ws, _, _) = store
        .create_workspace(alice.id, &name("V"), None)
        .await
        .unwrap();
    let (doc, _) = store
        .create_document(alice.id, ws.id, &DocumentTitle::parse("d").unwrap(), "1")
        .await
        .unwrap();
    let patch = DocumentPatch {
        title: None,
        content: Some("2".into()),
        restored_from: None,
    };
    let (v2, _) = store
        .update_document(alice.id, doc.id, &patch, Some(1))
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    let stale = store
        .update_document(alice.id, doc.id, &patch, Some(1))
        .await;
    assert!(matches!(
        stale,
        Err(StoreError::VersionMismatch { current: 2 })
    ));
}

fn key(u: &User) -> String {
    Email::parse(&u.email).unwrap().key().to_string()
}

fn kinds_by_user(notifications: &[stoa::store::Notification]) -> Vec<(i64, String)> {
    let mut kinds: Vec<(i64, String)> = notifications
        .iter()
        .map(|n| (n.user_id, n.kind.clone()))
        .collect();
    kinds.sort();
    kinds
}

async fn a_comment_mentioning_many_members_notifies_each_member_once(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = open(&db).await;
    let alice = user(&store, "alice").await;
    let (ws, _, _) = store
        .create_workspace(alice.id, &name("Many"), None)
        .await
        .unwrap();
    let mut members = Vec::new();
    for i in 0..60 {
        let m = user(&store, &format!("member{i:02}")).await;
        store
            .add_member(alice.id, ws.id, &MemberRef::Id(m.id), Role::Editor)
            .await
            .unwrap();
        members.push(m);
    }
    let mut outsiders = Vec::new();
    for i in 0..5 {
        outsiders.push(user(&store, &format!("outsider{i}")).await);
    }
    let (doc, _) = store
        .create_document(alice.id, ws.id, &DocumentTitle::parse("d").unwrap(), "")
        .await
        .unwrap();

    // Thirty members, the author herself, non-members, a repeat and an unknown address.
    let mut keys = vec![key(&alice)];
    keys.extend(outsiders.iter().map(key));
    keys.extend(members[..30].iter().map(key));
    keys.push(key(&members[0]));
    keys.push("nobody@example.com".into());
    let body = CommentBody::parse("hello all").unwrap();
    let (comment, ev) = store
        .create_comment(alice.id, doc.id, None, &body, &keys, None)
        .await
        .unwrap();
    // The author is a member, so she is mentioned; she is not notified of her own comment.
    let mut expected: Vec<i64> = members[..30].iter().map(|m| m.id).collect();
    expected.push(alice.id);
    expected.sort_unstable();
    assert_eq!(comment.mentions, expected);
    assert_eq!(
        store.comment(alice.id, comment.id).await.unwrap().mentions,
        expected
    );
    assert_eq!(ev.data["mentions"], serde_json::json!(expected));
    let notified = store
        .notifications_of_event(ws.id, ev.offset)
        .await
        .unwrap();
    let expected_kinds: Vec<(i64, String)> = members[..30]
        .iter()
        .map(|m| (m.id, "mention".to_string()))
        .collect();
    assert_eq!(kinds_by_user(&notified), expected_kinds);
    assert!(notified.iter().all(|n| n.event_offset == ev.offset
        && n.subject == format!("comment:{}", comment.id)
        && n.actor_id == Some(alice.id)
        && n.data["body"] == "hello all"
        && n.read_at.is_none()));
    for outsider in &outsiders {
        assert_eq!(store.unread_count(outsider.id).await.unwrap(), 0);
    }

    // A reply notifies the parent's author once: as a reply, or as a mention if named.
    let m0 = &members[0];
    let (_, ev) = store
        .create_comment(
            m0.id,
            doc.id,
            Some(comment.id),
            &body,
            &[key(&members[1])],
            None,
        )
        .await
        .unwrap();
    let notified = store
        .notifications_of_event(ws.id, ev.offset)
        .await
        .unwrap();
    let mut expected_kinds = vec![
        (alice.id, "reply".to_string()),
        (members[1].id, "mention".to_string()),
    ];
    expected_kinds.sort();
    assert_eq!(kinds_by_user(&notified), expected_kinds);
    let (_, ev) = store
        .create_comment(m0.id, doc.id, Some(comment.id), &body, &[key(&alice)], None)
        .await
        .unwrap();
    let notified = store
        .notifications_of_event(ws.id, ev.offset)
        .await
        .unwrap();
    assert_eq!(
        kinds_by_user(&notified),
        vec![(alice.id, "mention".to_string())]
    );

    // Sixty members named: only the first fifty names count.
    let keys: Vec<String> = members.iter().map(key).collect();
    let (many, ev) = store
        .create_comment(alice.id, doc.id, None, &body, &keys, None)
        .await
        .unwrap();
    let first_fifty: Vec<i64> = members[..50].iter().map(|m| m.id).collect();
    assert_eq!(many.mentions, first_fifty);
    let notified = store
        .notifications_of_event(ws.id, ev.offset)
        .await
        .unwrap();
    assert_eq!(
        notified.iter().map(|n| n.user_id).collect::<Vec<_>>(),
        first_fifty,
        "one notification per mentioned member, in member order"
    );

    // Editing the body replaces the mentions with the new ones.
    let patch = CommentPatch {
        body: Some((
            CommentBody::parse("just you two").unwrap(),
            vec![key(&members[59]), key(&outsiders[0]), key(&members[58])],
        )),
        resolved: None,
    };
    let (edited, _) = store
        .update_comment(alice.id, many.id, &patch)
        .await
        .unwrap();
    assert_eq!(edited.mentions, vec![members[58].id, members[59].id]);
    assert_eq!(
        store.comment(alice.id, many.id).await.unwrap().mentions,
        vec![members[58].id, members[59].id]
    );
    let patch = CommentPatch {
        body: Some((CommentBody::parse("nobody").unwrap(), Vec::new())),
        resolved: None,
    };
    let (edited, _) = store
        .update_comment(alice.id, many.id, &patch)
        .await
        .unwrap();
    assert!(edited.mentions.is_empty());
    assert!(store
        .comment(alice.id, many.id)
        .await
        .unwrap()
        .mentions
        .is_empty());
}

async fn unread_counts_of_several_users_come_in_one_call(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = open(&db).await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let dave = user(&store, "dave").await;
    let (ws, _, _) = store
        .create_workspace(alice.id, &name("Counts"), None)
        .await
        .unwrap();
    for m in [&bob, &carol] {
        // Each addition notifies the new member (member_added).
        store
            .add_member(alice.id, ws.id, &MemberRef::Id(m.id), Role::Editor)
            .await
            .unwrap();
    }
    let (doc, _) = store
        .create_document(alice.id, ws.id, &DocumentTitle::parse("d").unwrap(), "")
        .await
        .unwrap();
    let body = CommentBody::parse("ping").unwrap();
    for mentioned in [vec![key(&bob), key(&carol)], vec![key(&bob)]] {
        store
            .create_comment(alice.id, doc.id, None, &body, &mentioned, None)
            .await
            .unwrap();
    }

    // Dave has none (and is asked about twice); Alice caused everything, so has none either.
    let users = [bob.id, carol.id, dave.id, alice.id, dave.id];
    let counts = store.unread_counts(&users).await.unwrap();
    let expected: HashMap<i64, i64> =
        HashMap::from([(bob.id, 3), (carol.id, 2), (dave.id, 0), (alice.id, 0)]);
    assert_eq!(counts, expected);
    for (user, count) in &counts {
        assert_eq!(store.unread_count(*user).await.unwrap(), *count);
    }

    // Read notifications no longer count.
    let bobs = store
        .notifications(
            bob.id,
            true,
            PageRequest {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    store.mark_read(bob.id, bobs.items[0].id).await.unwrap();
    store.mark_all_read(carol.id).await.unwrap();
    let counts = store.unread_counts(&[bob.id, carol.id]).await.unwrap();
    assert_eq!(counts, HashMap::from([(bob.id, 2), (carol.id, 0)]));
    assert!(store.unread_counts(&[]).await.unwrap().is_empty());
}

async fn an_event_page_never_disagrees_with_its_latest_offset(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(open(&db).await);
    let alice = user(store.as_ref(), "alice").await;
    let outsider = user(store.as_ref(), "outsider").await;
    let (ws, _, _) = store
        .create_workspace(alice.id, &name("Busy"), None)
        .await
        .unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let writer = async {
        let title = DocumentTitle::parse("d").unwrap();
        for _ in 0..150 {
            store
                .create_document(alice.id, ws.id, &title, "")
                .await
                .unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    // While a writer appends, every page read is the log up to its latest_offset exactly:
    // nothing past it, and (the page not being full) nothing missing before it.
    let reader = async {
        let mut reads = 0;
        while !done.load(std::sync::atomic::Ordering::SeqCst) || reads == 0 {
            let page = store.events(alice.id, ws.id, 0, 1000).await.unwrap();
            let offsets: Vec<i64> = page.events.iter().map(|e| e.offset).collect();
            assert_eq!(
                offsets,
                (1..=page.latest_offset).collect::<Vec<_>>(),
                "a page of the log must end at the latest offset read with it"
            );
            let since = (page.latest_offset - 3).max(0);
            let tail = store.events(alice.id, ws.id, since, 2).await.unwrap();
            assert!(tail.events.len() <= 2);
            let tail_offsets: Vec<i64> = tail.events.iter().map(|e| e.offset).collect();
            assert!(
                tail_offsets
                    .iter()
                    .enumerate()
                    .all(|(i, o)| *o == since + 1 + i as i64 && *o <= tail.latest_offset),
                "since {since}: {tail_offsets:?} with latest offset {}",
                tail.latest_offset
            );
            reads += 1;
        }
    };
    tokio::join!(writer, reader);

    // The final page, a page past the end and a non-member's read.
    let page = store.events(alice.id, ws.id, 0, 1000).await.unwrap();
    assert_eq!(page.latest_offset, 151);
    assert_eq!(page.events.len(), 151);
    let empty = store.events(alice.id, ws.id, 151, 10).await.unwrap();
    assert!(empty.events.is_empty());
    assert_eq!(empty.latest_offset, 151);
    let page = store.events(alice.id, ws.id, 149, 1).await.unwrap();
    assert_eq!(
        page.events.iter().map(|e| e.offset).collect::<Vec<_>>(),
        [150]
    );
    assert_eq!(page.events[0].kind, "document.created");
    assert_eq!(page.latest_offset, 151);
    assert!(matches!(
        store.events(outsider.id, ws.id, 0, 10).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Every foreign-key column is the first column of some index, so deleting a referenced
/// row (a workspace, a user) never scans the referencing table.
async fn every_foreign_key_column_is_indexed(backend: Backend) {
    use sqlx::Connection;
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    open(&db).await.close().await;
    // (table, column) pairs: the first column of each foreign key and of each index.
    type Columns = Vec<(String, String)>;
    let (foreign_keys, indexed): (Columns, Columns) = match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            let fks = sqlx::query_as(
                "SELECT m.name, f.\"from\" FROM sqlite_master m \
                 JOIN pragma_foreign_key_list(m.name) f WHERE m.type = 'table'",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            let idx = sqlx::query_as(
                "SELECT m.name, i.name FROM sqlite_master m \
                 JOIN pragma_index_list(m.name) l JOIN pragma_index_info(l.name) i \
                 WHERE m.type = 'table' AND l.partial = 0 AND i.seqno = 0",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            (fks, idx)
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            let fks = sqlx::query_as(
                "SELECT c.conrelid::regclass::text, a.attname::text FROM pg_constraint c \
                 JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] \
                 WHERE c.contype = 'f'",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            let idx = sqlx::query_as(
                "SELECT i.indrelid::regclass::text, a.attname::text FROM pg_index i \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
                 WHERE i.indpred IS NULL",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            (fks, idx)
        }
    };
    assert!(foreign_keys.len() >= 18, "{foreign_keys:?}");
    let missing: Vec<_> = foreign_keys
        .iter()
        .filter(|fk| !indexed.contains(fk))
        .collect();
    assert!(
        missing.is_empty(),
        "foreign keys without an index: {missing:?}"
    );
}

/// A Yjs update inserting `text` at the end of `content` in a doc with client id `client`.
fn yjs_edit(doc: &yrs::Doc, text: &str) -> Vec<u8> {
    use yrs::{GetString, ReadTxn, Text, Transact};
    let content = doc.get_or_insert_text("content");
    let before = doc.transact().state_vector();
    let mut txn = doc.transact_mut();
    let at = content.get_string(&txn).len() as u32;
    content.insert(&mut txn, at, text);
    drop(txn);
    doc.transact().encode_state_as_update_v1(&before)
}

fn yjs_text(updates: &[Vec<u8>]) -> String {
    use yrs::updates::decoder::Decode;
    use yrs::{GetString, Transact, Update};
    let doc = yrs::Doc::new();
    let content = doc.get_or_insert_text("content");
    let mut txn = doc.transact_mut();
    for u in updates {
        txn.apply_update(Update::decode_v1(u).unwrap()).unwrap();
    }
    content.get_string(&txn)
}

async fn document_updates_load_in_order_compact_and_go_with_their_document(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = open(&db).await;
    let alice = user(&store, "alice").await;
    let (ws, _, _) = store
        .create_workspace(alice.id, &name("Y"), None)
        .await
        .unwrap();
    let (doc, _) = store
        .create_document(alice.id, ws.id, &DocumentTitle::parse("y").unwrap(), "")
        .await
        .unwrap();
    assert_eq!(
        store.document_updates(doc.id, 0).await.unwrap(),
        (vec![], 0)
    );

    let editor = yrs::Doc::new();
    let (u1, u2, u3) = (
        yjs_edit(&editor, "a"),
        yjs_edit(&editor, "b"),
        yjs_edit(&editor, "c"),
    );
    // Every byte value survives the round trip (BLOB and BYTEA alike).
    let raw: Vec<u8> = (0..=255).collect();
    let s2 = store
        .append_document_updates(doc.id, &[u1.clone(), u2.clone()], &[(alice.id, 2)])
        .await
        .unwrap();
    let s3 = store
        .append_document_updates(doc.id, std::slice::from_ref(&u3), &[(alice.id, 1)])
        .await
        .unwrap();
    assert!(s3 > s2);
    let (updates, last) = store.document_updates(doc.id, 0).await.unwrap();
    assert_eq!(updates, vec![u1.clone(), u2.clone(), u3.clone()]);
    assert_eq!(last, s3);
    assert_eq!(yjs_text(&updates), "abc");

    // A snapshot of the first two replaces them; what came after stays after it.
    let snapshot = {
        use yrs::updates::decoder::Decode;
        use yrs::{ReadTxn, StateVector, Transact, Update};
        let d = yrs::Doc::new();
        let mut txn = d.transact_mut();
        txn.apply_update(Update::decode_v1(&u1).unwrap()).unwrap();
        txn.apply_update(Update::decode_v1(&u2).unwrap()).unwrap();
        drop(txn);
        let snap = d
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        snap
    };
    // Updates whose edits are not recorded yet are never compacted away (their editors
    // would be lost with them).
    store
        .compact_document_updates(doc.id, &snapshot, s2)
        .await
        .unwrap();
    let (updates, _) = store.document_updates(doc.id, 0).await.unwrap();
    assert_eq!(updates.len(), 3, "nothing recorded, nothing compacted");
    store
        .record_live_edit(doc.id, "ab", s2, i64::MAX)
        .await
        .unwrap();
    store
        .compact_document_updates(doc.id, &snapshot, s3)
        .await
        .unwrap();
    let (updates, last) = store.document_updates(doc.id, 0).await.unwrap();
    assert_eq!(updates, vec![snapshot, u3]);
    assert_eq!(last, s3);
    assert_eq!(yjs_text(&updates), "abc");

    let s4 = store
        .append_document_updates(doc.id, std::slice::from_ref(&raw), &[])
        .await
        .unwrap();
    assert!(s4 > s3, "new updates go after the snapshot's position");
    let (updates, _) = store.document_updates(doc.id, 0).await.unwrap();
    assert_eq!(updates.last(), Some(&raw));
    // Read from a position: only what came after it.
    assert_eq!(
        store.document_updates(doc.id, s3).await.unwrap(),
        (vec![raw.clone()], s4)
    );
    assert_eq!(
        store.document_updates(doc.id, s4).await.unwrap(),
        (vec![], s4)
    );

    store.delete_document(alice.id, doc.id, None).await.unwrap();
    assert_eq!(
        store.document_updates(doc.id, 0).await.unwrap(),
        (vec![], 0)
    );
}

/// Edits written to a document's log are recorded (text, one `document.edited` per editor)
/// by whoever records them first, once; a REST write's text waits to reach the log before
/// live editing may overwrite it, and documents behind their log are found.
async fn live_edits_are_recorded_once_whoever_records_them(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = open(&db).await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let (ws, _, _) = store
        .create_workspace(alice.id, &name("Y"), None)
        .await
        .unwrap();
    store
        .add_member(alice.id, ws.id, &MemberRef::Id(bob.id), Role::Editor)
        .await
        .unwrap();
    let (doc, _) = store
        .create_document(alice.id, ws.id, &DocumentTitle::parse("y").unwrap(), "")
        .await
        .unwrap();
    let (other, _) = store
        .create_document(alice.id, ws.id, &DocumentTitle::parse("z").unwrap(), "")
        .await
        .unwrap();
    let behind = |after| {
        let store = &store;
        async move { store.documents_behind(after, 100).await.unwrap() }
    };
    assert_eq!(behind(0).await, vec![]);

    let editor = yrs::Doc::new();
    let s1 = store
        .append_document_updates(doc.id, &[yjs_edit(&editor, "a")], &[(alice.id, 3)])
        .await
        .unwrap();
    let s2 = store
        .append_document_updates(
            doc.id,
            &[yjs_edit(&editor, "b")],
            &[(bob.id, 1), (alice.id, 2)],
        )
        .await
        .unwrap();
    // Written, not recorded: the document is behind, and so found.
    assert_eq!(behind(0).await, vec![(doc.id, ws.id)]);
    assert_eq!(behind(doc.id).await, vec![]);

    // Recording the first update alone: Alice's 3 edits, the text so far.
    let first = store
        .record_live_edit(doc.id, "a", s1, i64::MAX)
        .await
        .unwrap();
    let edits = |r: &stoa::store::LiveEdit| {
        r.events
            .iter()
            .map(|e| (e.kind.clone(), e.actor_id, e.data["edits"].as_i64()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        edits(&first),
        vec![("document.edited".to_string(), Some(alice.id), Some(3))]
    );
    // Two nodes recording the rest at once: each edit is recorded by one of them.
    let (x, y) = tokio::join!(
        store.record_live_edit(doc.id, "ab", s2, i64::MAX),
        store.record_live_edit(doc.id, "ab", s2, i64::MAX)
    );
    let mut rest: Vec<_> = edits(&x.unwrap());
    rest.extend(edits(&y.unwrap()));
    rest.sort();
    let mut want = vec![
        ("document.edited".to_string(), Some(alice.id), Some(2)),
        ("document.edited".to_string(), Some(bob.id), Some(1)),
    ];
    want.sort();
    assert_eq!(rest, want);
    let text = store.document_text(doc.id).await.unwrap().unwrap();
    assert_eq!((text.content.as_str(), text.text_seq), ("ab", s2));
    assert_eq!(behind(0).await, vec![]);
    // Nothing new: nothing recorded, no new version.
    let again = store
        .record_live_edit(doc.id, "ab", s2, i64::MAX)
        .await
        .unwrap();
    assert!(again.events.is_empty());
    assert_eq!(
        store.document_text(doc.id).await.unwrap().unwrap().version,
        text.version
    );

    // A REST write: its text is ahead of the log until its update is in it. Meanwhile live
    // editing records edits but leaves the REST text alone, and the document is behind.
    let patch = DocumentPatch {
        title: None,
        content: Some("from REST".into()),
        restored_from: None,
    };
    let (written, _) = store
        .update_document(bob.id, doc.id, &patch, None)
        .await
        .unwrap();
    assert_eq!(behind(0).await, vec![(doc.id, ws.id)]);
    let pending = store.document_text(doc.id).await.unwrap().unwrap();
    assert_eq!(pending.pending, Some(written.version));
    let s3 = store
        .append_document_updates(doc.id, &[yjs_edit(&editor, "c")], &[(alice.id, 1)])
        .await
        .unwrap();
    let live = store
        .record_live_edit(doc.id, "abc", s3, i64::MAX)
        .await
        .unwrap();
    assert_eq!(live.events.len(), 1);
    assert!(
        live.adopt.is_none(),
        "a fresh REST write is its own node's to finish"
    );
    let kept = store.document_text(doc.id).await.unwrap().unwrap();
    assert_eq!(kept.content, "from REST");
    // An older version's mark does nothing; the write's own clears it.
    store
        .text_in_log(doc.id, written.version - 1, 0)
        .await
        .unwrap();
    assert!(store
        .document_text(doc.id)
        .await
        .unwrap()
        .unwrap()
        .pending
        .is_some());
    store.text_in_log(doc.id, written.version, 0).await.unwrap();
    assert_eq!(
        store.document_text(doc.id).await.unwrap().unwrap().pending,
        None
    );
    assert_eq!(behind(0).await, vec![]);
    let after = store
        .record_live_edit(doc.id, "from REST!", s3, i64::MAX)
        .await
        .unwrap();
    assert!(after.events.is_empty());
    assert_eq!(
        store.document_text(doc.id).await.unwrap().unwrap().content,
        "from REST!"
    );
    // The other document was never touched.
    assert_eq!(
        store
            .document_text(other.id)
            .await
            .unwrap()
            .unwrap()
            .text_seq,
        0
    );
    // A deleted document records nothing.
    store.delete_document(alice.id, doc.id, None).await.unwrap();
    assert!(store
        .record_live_edit(doc.id, "x", s3, i64::MAX)
        .await
        .unwrap()
        .events
        .is_empty());
}

/// The search index of a document is worked out again when its title or text changes, and
/// not when an update leaves both as they were (on PostgreSQL a generated column was
/// recomputed by every update of the row: tens of milliseconds for a large text, inside
/// the transaction). A marker put into the index by hand shows whether it was redone.
async fn a_document_is_indexed_again_only_when_its_words_change(backend: Backend) {
    use sqlx::Connection;
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = open(&db).await;
    let alice = user(&store, "alice").await;
    let (ws, _, _) = store
        .create_workspace(alice.id, &name("Acme"), None)
        .await
        .unwrap();
    let title = DocumentTitle::parse("Plan").unwrap();
    let (doc, _) = store
        .create_document(alice.id, ws.id, &title, "alpha beta")
        .await
        .unwrap();
    // (mark the index with a word the document does not hold, does the index hold a word)
    let (mark, holds): (Vec<String>, String) = match backend {
        Backend::Sqlite => (
            vec![
                format!("DELETE FROM document_search WHERE rowid = {}", doc.id),
                format!(
                    "INSERT INTO document_search (rowid, title, body) VALUES ({}, '', 'sentinel')",
                    doc.id
                ),
            ],
            format!(
                "SELECT COUNT(*) FROM document_search WHERE document_search MATCH $1 AND rowid = {}",
                doc.id
            ),
        ),
        Backend::Postgres => (
            vec![format!(
                "UPDATE documents SET search = to_tsvector('simple', 'sentinel') WHERE id = {}",
                doc.id
            )],
            format!(
                "SELECT COUNT(*) FROM documents WHERE search @@ to_tsquery('simple', $1) AND id = {}",
                doc.id
            ),
        ),
    };
    async fn count(conn: &mut sqlx::AnyConnection, sql: &str, word: &str) -> bool {
        let n: i64 = sqlx::query_scalar(sql)
            .bind(word)
            .fetch_one(conn)
            .await
            .unwrap();
        n == 1
    }
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    macro_rules! holds {
        ($word:expr) => {
            count(&mut conn, &holds, $word).await
        };
    }
    macro_rules! mark {
        () => {
            for sql in &mark {
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
        };
    }
    assert!(holds!("alpha"));
    mark!();
    // The same title again, no text: nothing to index again.
    let same = DocumentPatch {
        title: Some(title.clone()),
        content: None,
        restored_from: None,
    };
    store
        .update_document(alice.id, doc.id, &same, None)
        .await
        .unwrap();
    assert!(holds!("sentinel"), "indexed again with no change");
    // The text changes: indexed again.
    let text = DocumentPatch {
        title: None,
        content: Some("gamma delta".into()),
        restored_from: None,
    };
    store
        .update_document(alice.id, doc.id, &text, None)
        .await
        .unwrap();
    assert!(holds!("gamma"));
    assert!(!holds!("sentinel"));
    // So does the title.
    mark!();
    let renamed = DocumentPatch {
        title: Some(DocumentTitle::parse("Zeta").unwrap()),
        content: None,
        restored_from: None,
    };
    store
        .update_document(alice.id, doc.id, &renamed, None)
        .await
        .unwrap();
    assert!(holds!("zeta"));
    assert!(!holds!("sentinel"));
}
