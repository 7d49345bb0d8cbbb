//! `GET /api/v1/workspaces/{id}/search?q=` and `GET /api/v1/search?q=` (every workspace of
//! the caller): documents by title and text, and comments, ranked, with highlighted
//! snippets, filters and cursor pagination. Any member may search; what they find is only
//! ever in workspaces they belong to at the moment of the search.

use actix_web::{get, web, HttpResponse};
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Problem};
use super::extract::AuthUser;
use super::AppState;
use crate::domain::{format_timestamp, snippet, SearchQuery, Zone};
use crate::search::SearchError;
use crate::store::{HitKey, HitKind, SearchRequest};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// What to look for: words (all must match), `"a phrase"`, `prefix*`, `-excluded`, and
    /// `OR` between alternatives. Any other character separates words. At most 512 bytes
    /// and 32 words.
    #[param(min_length = 1, max_length = 512)]
    pub q: String,
    /// Only documents or only comments.
    pub kind: Option<HitKind>,
    /// Only what this user created (documents) or wrote (comments).
    #[param(minimum = 1)]
    pub author: Option<i64>,
    /// Last changed at or after this instant (RFC 3339 or a UTC date).
    #[param(
        pattern = "^([0-9]{4}-[0-9]{2}-[0-9]{2}([Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2}))?)?$"
    )]
    pub from: Option<String>,
    /// Last changed before this instant.
    #[param(
        pattern = "^([0-9]{4}-[0-9]{2}-[0-9]{2}([Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2}))?)?$"
    )]
    pub to: Option<String>,
    /// Hits per page, 1 to 50 (default 20).
    #[param(minimum = 1, maximum = 50)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_-]{0,64}$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResult {
    pub kind: HitKind,
    /// The document's or the comment's id.
    pub id: i64,
    pub workspace_id: i64,
    pub document_id: i64,
    /// The document's title (plain text).
    pub title: String,
    /// The title as HTML: escaped, matched words in `<mark>`.
    pub title_html: String,
    /// A piece of the matched text as HTML: escaped, matched words in `<mark>`, `…` where
    /// cut. Null when only the title matched.
    pub snippet: Option<String>,
    pub author_id: Option<i64>,
    pub updated_at: String,
    /// Relevance, higher first; comparable within one search only.
    pub score: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResults {
    pub items: Vec<SearchResult>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
    /// `sql` or `elasticsearch`.
    pub backend: &'static str,
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn encode_key(k: &HitKey) -> String {
    B64.encode(format!(
        "{:016x}.{}.{}",
        k.score.to_bits(),
        k.kind.as_str(),
        k.id
    ))
}

fn decode_key(cursor: &str) -> Result<Option<HitKey>, ApiError> {
    if cursor.is_empty() {
        return Ok(None);
    }
    let invalid = || ApiError::bad_request("invalid_cursor", "the cursor is not valid");
    let bytes = B64.decode(cursor).map_err(|_| invalid())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| invalid())?;
    let mut parts = text.splitn(3, '.');
    let (Some(score), Some(kind), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    let score = u64::from_str_radix(score, 16)
        .ok()
        .filter(|_| score.len() == 16)
        .map(f64::from_bits)
        .filter(|s| s.is_finite())
        .ok_or_else(invalid)?;
    let kind = HitKind::parse(kind).ok_or_else(invalid)?;
    let id = id
        .parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(invalid)?;
    Ok(Some(HitKey { score, kind, id }))
}

fn instant(field: &'static str, v: &Option<String>) -> Result<Option<i64>, ApiError> {
    match v.as_deref().filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(t) => Zone::utc()
            .parse_instant(t)
            .map(Some)
            .map_err(|m| ApiError::validation(field, m)),
    }
}

async fn run(
    state: &AppState,
    user: i64,
    workspaces: Vec<i64>,
    params: &SearchParams,
) -> Result<HttpResponse, ApiError> {
    let query = SearchQuery::parse(&params.q).map_err(|m| ApiError::validation("q", m))?;
    if params.author.is_some_and(|a| a < 1) {
        return Err(ApiError::validation(
            "author",
            "must be a user id (1 or greater)",
        ));
    }
    let limit = params.limit.unwrap_or(20);
    if !(1..=50).contains(&limit) {
        return Err(ApiError::validation("limit", "must be between 1 and 50"));
    }
    let request = SearchRequest {
        user,
        workspaces,
        query,
        kind: params.kind,
        author: params.author,
        from: instant("from", &params.from)?,
        to: instant("to", &params.to)?,
        after: decode_key(params.cursor.as_deref().unwrap_or(""))?,
        limit: limit + 1,
    };
    let mut hits = state.search.search(&request).await.map_err(|e| match e {
        SearchError::Store(e) => ApiError::from(e),
        SearchError::Unavailable(why) | SearchError::Misconfigured(why) => {
            tracing::warn!(backend = state.search.name(), error = %why, "search failed");
            ApiError::Unavailable("search is unavailable; try again shortly".into())
        }
    })?;
    let next_cursor = if hits.len() > limit as usize {
        hits.truncate(limit as usize);
        hits.last().map(|h| {
            encode_key(&HitKey {
                score: h.score,
                kind: h.kind,
                id: h.id,
            })
        })
    } else {
        None
    };
    let texts = state.store.hit_texts(&hits).await?;
    let items = hits
        .iter()
        .filter_map(|h| {
            // An external index may still hold what was deleted a moment ago.
            let t = texts.get(&(h.kind, h.id))?;
            let title_html = snippet(&request.query, &t.title)
                .unwrap_or_else(|| crate::domain::escape_html(&t.title));
            let text_snippet = match h.kind {
                HitKind::Document => snippet(&request.query, &t.text),
                HitKind::Comment => snippet(&request.query, &t.text)
                    .or_else(|| Some(crate::domain::escape_html(&t.text))),
            };
            Some(SearchResult {
                kind: h.kind,
                id: h.id,
                workspace_id: h.workspace_id,
                document_id: h.document_id,
                title: t.title.clone(),
                title_html,
                snippet: text_snippet,
                author_id: h.author_id,
                updated_at: format_timestamp(h.at),
                score: h.score,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(SearchResults {
        items,
        next_cursor,
        backend: state.search.name(),
    }))
}

/// Search one workspace (any member).
#[utoipa::path(
    tag = "search",
    params(("id" = i64, Path, description = "Workspace id"), SearchParams),
    responses(
        (status = 200, description = "Hits, best first", body = SearchResults),
        (status = 400, description = "Invalid cursor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Nothing to search for in `q`, or invalid filters", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The search backend is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/workspaces/{id}/search")]
pub async fn search_workspace(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
    params: web::Query<SearchParams>,
) -> Result<HttpResponse, ApiError> {
    state.store.role(user.id, *id).await?;
    run(&state, user.id, vec![*id], &params).await
}

/// Search every workspace the caller is a member of.
#[utoipa::path(
    tag = "search",
    params(SearchParams),
    responses(
        (status = 200, description = "Hits, best first", body = SearchResults),
        (status = 400, description = "Invalid cursor", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Nothing to search for in `q`, or invalid filters", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The search backend is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/search")]
pub async fn search_all(
    state: web::Data<AppState>,
    user: AuthUser,
    params: web::Query<SearchParams>,
) -> Result<HttpResponse, ApiError> {
    let workspaces = state.store.workspace_ids_of(user.id).await?;
    run(&state, user.id, workspaces, &params).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_forgeries_are_refused() {
        let key = HitKey {
            score: 1.25,
            kind: HitKind::Document,
            id: 42,
        };
        assert_eq!(decode_key(&encode_key(&key)).unwrap(), Some(key));
        assert_eq!(decode_key("").unwrap(), None);
        for bad in [
            "!!!",
            &B64.encode("zz.document.1"),
            &B64.encode(format!("{:016x}.folder.1", 1.0f64.to_bits())),
            &B64.encode(format!("{:016x}.document.-1", 1.0f64.to_bits())),
            &B64.encode(format!("{:016x}.document.1", f64::NAN.to_bits())),
        ] {
            assert!(decode_key(bad).is_err(), "{bad}");
        }
    }
}
