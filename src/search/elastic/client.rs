//! The client: creates the index with Stoa's mapping, runs searches, sends bulk requests.

use std::time::Duration;

use elasticsearch::auth::Credentials;
use elasticsearch::http::request::JsonBody;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::indices::{IndicesCreateParts, IndicesDeleteParts, IndicesRefreshParts};
use elasticsearch::{BulkParts, DeleteByQueryParts, Elasticsearch, SearchParts};
use serde_json::{json, Value};

use super::codec::{bulk_failures, hits_of, index_definition, search_body};
use crate::config::SearchSettings;
use crate::search::SearchError;
use crate::store::{SearchHit, SearchRequest};

fn unavailable(e: impl std::fmt::Display) -> SearchError {
    SearchError::Unavailable(e.to_string())
}

/// A connection to Elasticsearch and the name of Stoa's index there.
pub struct Elastic {
    client: Elasticsearch,
    index: String,
}

impl Elastic {
    /// A client for `settings.elasticsearch_url` (credentials in the URL are sent as Basic
    /// authentication, not in the URL). Nothing is sent yet.
    pub fn new(settings: &SearchSettings) -> Result<Elastic, SearchError> {
        let mut url = url::Url::parse(&settings.elasticsearch_url)
            .map_err(|e| SearchError::Misconfigured(format!("search.elasticsearch_url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SearchError::Misconfigured(
                "search.elasticsearch_url: use http:// or https://".into(),
            ));
        }
        let credentials = if url.username().is_empty() {
            None
        } else {
            let user = url.username().to_string();
            let password = url.password().unwrap_or("").to_string();
            let _ = url.set_username("");
            let _ = url.set_password(None);
            Some(Credentials::Basic(user, password))
        };
        let mut transport = TransportBuilder::new(SingleNodeConnectionPool::new(url)).timeout(
            Duration::from_millis(settings.elasticsearch_timeout_ms.max(100)),
        );
        if let Some(c) = credentials {
            transport = transport.auth(c);
        }
        let transport = transport
            .build()
            .map_err(|e| SearchError::Misconfigured(e.to_string()))?;
        Ok(Elastic {
            client: Elasticsearch::new(transport),
            index: settings.elasticsearch_index.clone(),
        })
    }

    pub fn index(&self) -> &str {
        &self.index
    }

    /// Creates the index with Stoa's mapping unless it exists.
    pub async fn ensure_index(&self) -> Result<(), SearchError> {
        let res = self
            .client
            .indices()
            .create(IndicesCreateParts::Index(&self.index))
            .body(index_definition())
            .send()
            .await
            .map_err(unavailable)?;
        let status = res.status_code().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        let exists = body["error"]["type"] == "resource_already_exists_exception";
        if (200..300).contains(&status) || exists {
            Ok(())
        } else {
            Err(unavailable(format!("creating index: {status} {body}")))
        }
    }

    /// Deletes the index (a missing one is fine).
    pub async fn drop_index(&self) -> Result<(), SearchError> {
        let res = self
            .client
            .indices()
            .delete(IndicesDeleteParts::Index(&[&self.index]))
            .send()
            .await
            .map_err(unavailable)?;
        let status = res.status_code().as_u16();
        if (200..300).contains(&status) || status == 404 {
            Ok(())
        } else {
            Err(unavailable(format!(
                "deleting index: {status} {}",
                res.text().await.unwrap_or_default()
            )))
        }
    }

    /// Makes everything written so far searchable.
    pub async fn refresh(&self) -> Result<(), SearchError> {
        self.client
            .indices()
            .refresh(IndicesRefreshParts::Index(&[&self.index]))
            .send()
            .await
            .map_err(unavailable)?
            .error_for_status_code()
            .map_err(unavailable)?;
        Ok(())
    }

    /// One `_bulk` request; `Err` unless every item succeeded or was already applied.
    pub async fn bulk(&self, lines: Vec<Value>) -> Result<(), SearchError> {
        if lines.is_empty() {
            return Ok(());
        }
        let body: Vec<JsonBody<Value>> = lines.into_iter().map(JsonBody::new).collect();
        let res = self
            .client
            .bulk(BulkParts::Index(&self.index))
            .body(body)
            .send()
            .await
            .map_err(unavailable)?;
        let status = res.status_code().as_u16();
        let response: Value = res.json().await.map_err(unavailable)?;
        if !(200..300).contains(&status) {
            return Err(unavailable(format!("bulk: {status} {response}")));
        }
        let failures = bulk_failures(&response);
        if failures.is_empty() {
            Ok(())
        } else {
            Err(unavailable(format!("bulk: {}", failures.join("; "))))
        }
    }

    /// Deletes the comments of deleted documents.
    pub async fn delete_comments_of(&self, documents: &[i64]) -> Result<(), SearchError> {
        if documents.is_empty() {
            return Ok(());
        }
        self.client
            .delete_by_query(DeleteByQueryParts::Index(&[&self.index]))
            .conflicts(elasticsearch::params::Conflicts::Proceed)
            .body(json!({"query": {"bool": {"filter": [
                {"term": {"kind": "comment"}},
                {"terms": {"document_id": documents}}
            ]}}}))
            .send()
            .await
            .map_err(unavailable)?
            .error_for_status_code()
            .map_err(unavailable)?;
        Ok(())
    }

    pub async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>, SearchError> {
        if request.workspaces.is_empty() {
            return Ok(Vec::new());
        }
        let res = self
            .client
            .search(SearchParts::Index(&[&self.index]))
            .body(search_body(request))
            .send()
            .await
            .map_err(unavailable)?;
        let status = res.status_code().as_u16();
        let body: Value = res.json().await.map_err(unavailable)?;
        if !(200..300).contains(&status) {
            return Err(unavailable(format!("search: {status} {body}")));
        }
        hits_of(&body).map_err(unavailable)
    }
}
