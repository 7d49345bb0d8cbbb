//! The search port: [`SearchBackend`] finds hits for a parsed, authorised
//! [`SearchRequest`]. Two implementations: [`SqlSearch`], the database's own full-text
//! index (the default: nothing else to run), and [`elastic::Elastic`] when
//! `search.elasticsearch_url` is set, fed by the [`elastic::Indexer`] actor. Whatever the
//! backend, hits are shown with the texts the database holds now, and their snippets are
//! made by [`crate::domain::snippet`], so the API answers alike on every backend.

use std::sync::Arc;

use async_trait::async_trait;

use crate::store::{SearchHit, SearchRequest, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The external index could not answer (unreachable, timed out, refused the request).
    #[error("search backend unavailable: {0}")]
    Unavailable(String),
    /// `search.elasticsearch_url` cannot be used as it is.
    #[error("{0}")]
    Misconfigured(String),
}

pub mod elastic;

#[async_trait]
pub trait SearchBackend: Send + Sync {
    /// `sql` or `elasticsearch`.
    fn name(&self) -> &'static str;
    /// Up to `request.limit` hits within `request.workspaces`, best first, after
    /// `request.after`.
    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>, SearchError>;
    /// Returns once every change committed before the call is searchable (at once for the
    /// database's own index, which changes in the same transaction).
    async fn settled(&self) {}
}

/// Search in the database's own index (FTS5 or tsvector), through the store.
pub struct SqlSearch(pub Arc<dyn Store>);

#[async_trait]
impl SearchBackend for SqlSearch {
    fn name(&self) -> &'static str {
        "sql"
    }

    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>, SearchError> {
        Ok(self.0.search(request).await?)
    }
}
