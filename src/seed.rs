//! `stoa seed`: builds a large workspace for benchmarks (reports over a million events,
//! search over a hundred thousand documents): members, documents and comments with text
//! drawn from a fixed vocabulary, and an event log spread over a span of days, written in
//! bulk; then the report rollups are rebuilt from that log. The same seed gives the same
//! workspace. Every member's password is printed at the end.

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::auth::{PasswordHasher, PasswordParams};
use crate::config::Settings;
use crate::domain::{now_ms, DisplayName, Email, EventKind, Role, WorkspaceName};
use crate::ops::OpsError;
use crate::store::prelude::*;
use crate::store::{ImportedEvent, MemberRef, SqlStore};

/// What to build.
#[derive(Debug, Clone)]
pub struct SeedPlan {
    pub workspace: String,
    pub members: u32,
    pub documents: u32,
    pub comments: u32,
    /// Events in the log in all (those of the documents and comments included).
    pub events: u64,
    /// The log spans this many days up to now.
    pub days: u32,
    pub seed: u64,
}

impl Default for SeedPlan {
    fn default() -> SeedPlan {
        SeedPlan {
            workspace: "Seeded".into(),
            members: 50,
            documents: 10_000,
            comments: 50_000,
            events: 1_000_000,
            days: 365,
            seed: 1,
        }
    }
}

/// The password of every seeded member.
pub const SEED_PASSWORD: &str = "seeded-password";

const SYLLABLES: [&str; 24] = [
    "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "pe", "da", "go", "hu", "ra", "zen", "tor",
    "mar", "lin", "qua", "bel", "dor", "fi", "sto", "ax", "ol",
];

/// A vocabulary of `n` made-up words, always the same.
fn vocabulary(n: usize) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(7);
    (0..n)
        .map(|_| {
            let parts = rng.gen_range(2..=4);
            (0..parts)
                .map(|_| SYLLABLES[rng.gen_range(0..SYLLABLES.len())])
                .collect()
        })
        .collect()
}

/// Words drawn with a skew (some common, most rare), as in real text.
fn words(rng: &mut StdRng, vocab: &[String], n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        let r: f64 = rng.gen();
        let idx = ((r * r * r) * vocab.len() as f64) as usize;
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&vocab[idx.min(vocab.len() - 1)]);
    }
    out
}

/// Builds the workspace; prints progress to stderr and a summary to stdout.
pub async fn run(settings: &Settings, plan: &SeedPlan) -> Result<(), OpsError> {
    let started = Instant::now();
    let store = SqlStore::connect(&settings.database)
        .await
        .map_err(|e| OpsError::failed(format!("database: {e}")))?;
    let hasher = PasswordHasher::new(PasswordParams {
        memory_kib: settings.auth.password_hash_memory_kib,
        iterations: settings.auth.password_hash_iterations,
    })
    .map_err(OpsError::failed)?;
    let hash = hasher.hash(SEED_PASSWORD).map_err(OpsError::failed)?;
    let err = |e: crate::store::StoreError| OpsError::failed(e);
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let tag = crate::auth::random_hex(3);

    let mut users = Vec::new();
    for i in 0..plan.members {
        let email = Email::parse(&format!("seed{i}.{tag}@example.com"))?;
        let name = DisplayName::parse(&format!("Member {i}"))?;
        users.push(store.create_user(&email, &name, &hash).await.map_err(err)?);
    }
    let owner = users[0].id;
    let ws_name = WorkspaceName::parse(&plan.workspace)?;
    let (ws, _, _) = store
        .create_workspace(owner, &ws_name, None)
        .await
        .map_err(err)?;
    for (i, u) in users.iter().enumerate().skip(1) {
        let role = match i % 10 {
            1 => Role::Admin,
            0 | 9 => Role::Viewer,
            _ => Role::Editor,
        };
        store
            .add_member(owner, ws.id, &MemberRef::Id(u.id), role)
            .await
            .map_err(err)?;
    }
    let writers: Vec<i64> = users.iter().map(|u| u.id).collect();
    let now = now_ms();
    let span = i64::from(plan.days) * 86_400_000;
    let start = now - span;
    let at = |rng: &mut StdRng| start + rng.gen_range(0..span);
    let vocab = vocabulary(20_000);
    let mut phases = serde_json::Map::new();
    let mut phase = Instant::now();

    eprintln!(
        "seed: {} members in workspace {} ({})",
        users.len(),
        ws.id,
        ws.slug
    );
    let mut doc_ids = Vec::with_capacity(plan.documents as usize);
    let mut events_made: u64 = 0;
    let chunk = 5_000usize;
    let mut done = 0usize;
    while done < plan.documents as usize {
        let n = chunk.min(plan.documents as usize - done);
        let author = writers[rng.gen_range(0..writers.len())];
        let docs: Vec<(String, String, i64)> = (0..n)
            .map(|_| {
                let title_len = rng.gen_range(2..6);
                let body_len = rng.gen_range(40..240);
                (
                    words(&mut rng, &vocab, title_len),
                    words(&mut rng, &vocab, body_len),
                    at(&mut rng),
                )
            })
            .collect();
        let ids = store
            .import_documents(ws.id, author, &docs)
            .await
            .map_err(err)?;
        let events: Vec<ImportedEvent> = ids
            .iter()
            .zip(&docs)
            .map(|(id, (title, _, t))| ImportedEvent {
                kind: EventKind::DocumentCreated,
                actor: author,
                subject: format!("document:{id}"),
                data: json!({"document_id": id, "title": title, "version": 1}),
                at: *t,
            })
            .collect();
        store.import_events(ws.id, &events).await.map_err(err)?;
        events_made += events.len() as u64;
        doc_ids.extend(ids);
        done += n;
        eprintln!("seed: {done} documents");
    }
    // Documents (and their search index rows, written by the database's triggers or
    // generated columns) and their creation events.
    let rate = |n: usize, since: Instant| json!((n as f64 / since.elapsed().as_secs_f64()).round());
    phases.insert("documents_per_sec".into(), rate(doc_ids.len(), phase));
    phase = Instant::now();
    if !doc_ids.is_empty() {
        let mut done = 0usize;
        while done < plan.comments as usize {
            let n = chunk.min(plan.comments as usize - done);
            let comments: Vec<(i64, i64, String, i64)> = (0..n)
                .map(|_| {
                    let len = rng.gen_range(4..30);
                    (
                        doc_ids[rng.gen_range(0..doc_ids.len())],
                        writers[rng.gen_range(0..writers.len())],
                        words(&mut rng, &vocab, len),
                        at(&mut rng),
                    )
                })
                .collect();
            store.import_comments(ws.id, &comments).await.map_err(err)?;
            let events: Vec<ImportedEvent> = comments
                .iter()
                .map(|(doc, author, _, t)| ImportedEvent {
                    kind: EventKind::CommentCreated,
                    actor: *author,
                    subject: format!("document:{doc}"),
                    data: json!({"document_id": doc}),
                    at: *t,
                })
                .collect();
            store.import_events(ws.id, &events).await.map_err(err)?;
            events_made += events.len() as u64;
            done += n;
            eprintln!("seed: {done} comments");
        }
    }
    phases.insert(
        "comments_per_sec".into(),
        rate(plan.comments as usize, phase),
    );
    phase = Instant::now();
    // The rest of the log: mostly live editing, some REST edits and resolved threads.
    let rest = plan.events.saturating_sub(events_made);
    let batch = 10_000u64;
    let mut made = 0u64;
    while made < rest && !doc_ids.is_empty() {
        let n = batch.min(rest - made);
        let mut events: Vec<ImportedEvent> = (0..n)
            .map(|_| {
                let doc = doc_ids[rng.gen_range(0..doc_ids.len())];
                let roll: u32 = rng.gen_range(0..100);
                let kind = match roll {
                    0..=74 => EventKind::DocumentEdited,
                    75..=94 => EventKind::DocumentUpdated,
                    _ => EventKind::CommentResolved,
                };
                ImportedEvent {
                    kind,
                    actor: writers[rng.gen_range(0..writers.len())],
                    subject: format!("document:{doc}"),
                    data: json!({"document_id": doc, "edits": rng.gen_range(1..40)}),
                    at: at(&mut rng),
                }
            })
            .collect();
        events.sort_by_key(|e| e.at);
        store.import_events(ws.id, &events).await.map_err(err)?;
        made += n;
        if made % 100_000 < batch {
            eprintln!("seed: {} events", events_made + made);
        }
    }
    phases.insert("events_per_sec".into(), rate(made as usize, phase));
    phase = Instant::now();
    eprintln!("seed: rebuilding report rollups");
    store.rebuild_report_rollups(ws.id).await.map_err(err)?;
    phases.insert(
        "rollup_rebuild_seconds".into(),
        json!(phase.elapsed().as_secs_f64()),
    );
    let events = store.log_head(ws.id).await.map_err(err)?;
    store.close().await;
    println!(
        "{}",
        json!({
            "workspace_id": ws.id,
            "slug": ws.slug,
            "members": users.len(),
            "documents": doc_ids.len(),
            "comments": plan.comments,
            "events": events,
            "admin_email": users[0].email,
            "password": SEED_PASSWORD,
            "seconds": started.elapsed().as_secs_f64(),
            "phases": phases,
        })
    );
    Ok(())
}
