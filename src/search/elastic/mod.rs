//! Search in Elasticsearch (`search.elasticsearch_url`), through the official
//! `elasticsearch` crate.
//!
//! - [`Elastic`] is the client: it creates the index with Stoa's mapping, runs searches and
//!   sends bulk requests. The request bodies and the reading of responses are plain
//!   functions ([`index_definition`], [`search_body`], [`hits_of`], [`bulk_lines`],
//!   [`bulk_failures`]) so they are unit-tested against Elasticsearch's documented formats.
//! - [`Indexer`] is the actor that follows every workspace's event log into the index: for
//!   each batch of events it reads the current rows of the documents and comments they name
//!   and sends one bulk request (index what exists, delete what does not), then saves its
//!   position in `search_positions`. Delivery is at least once: a batch whose bulk request
//!   fails is retried with exponential backoff from the saved position, and after a restart
//!   the indexer resumes there. Writes are idempotent by id and version (`external_gte`
//!   with the document's version or the comment's `updated_at`), so a replayed or late batch
//!   cannot put an older text over a newer one.
//! - [`ElasticSearch`] is the [`SearchBackend`] the API uses.
//!
//! Words are analysed as the SQL backends see them: runs of letters and digits (a pattern
//! tokenizer), lower-cased. The user's query reaches Elasticsearch only as `multi_match`
//! phrases of such words, never as query-string syntax.

mod client;
mod codec;
mod indexer;

pub use client::Elastic;
pub use codec::*;
pub use indexer::{reindex, Indexer};

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{SearchBackend, SearchError};
use crate::store::{SearchHit, SearchRequest};

/// The search backend on Elasticsearch, with its indexer.
pub struct ElasticSearch {
    pub es: Arc<Elastic>,
    pub indexer: Indexer,
}

#[async_trait]
impl SearchBackend for ElasticSearch {
    fn name(&self) -> &'static str {
        "elasticsearch"
    }

    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>, SearchError> {
        self.es.search(request).await
    }

    async fn settled(&self) {
        self.indexer.caught_up(Duration::from_secs(30)).await;
        if let Err(e) = self.es.refresh().await {
            tracing::warn!(error = %e, "refreshing the search index failed");
        }
    }
}
