//! What Stoa sends Elasticsearch and reads back, as plain functions over JSON: the index
//! definition, search bodies and hits, bulk lines and failures, and what a batch of events
//! asks of the index. Unit-tested against Elasticsearch's documented formats.

use serde_json::{json, Value};

use crate::domain::{EventKind, Phrase, SearchQuery};
use crate::store::{Event, HitKind, Indexable, SearchHit, SearchRequest};

/// The index's settings and mapping.
pub fn index_definition() -> Value {
    json!({
        "settings": {
            "analysis": {
                "tokenizer": {
                    "stoa_words": {"type": "pattern", "pattern": "[^\\p{L}\\p{N}]+"}
                },
                "analyzer": {
                    "stoa_text": {"type": "custom", "tokenizer": "stoa_words", "filter": ["lowercase"]}
                }
            }
        },
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "kind": {"type": "keyword"},
                "id": {"type": "long"},
                "workspace_id": {"type": "long"},
                "document_id": {"type": "long"},
                "author_id": {"type": "long"},
                "at": {"type": "long"},
                "version": {"type": "long"},
                "title": {"type": "text", "analyzer": "stoa_text"},
                "body": {"type": "text", "analyzer": "stoa_text"}
            }
        }
    })
}

/// The index's `_id` of a document or comment.
pub fn doc_id(kind: HitKind, id: i64) -> String {
    match kind {
        HitKind::Document => format!("d{id}"),
        HitKind::Comment => format!("c{id}"),
    }
}

fn phrase_query(p: &Phrase) -> Value {
    json!({
        "multi_match": {
            "query": p.words.join(" "),
            "fields": ["title^10", "body"],
            "type": if p.prefix { "phrase_prefix" } else { "phrase" }
        }
    })
}

fn query_clause(q: &SearchQuery) -> Value {
    let groups: Vec<Value> = q
        .groups
        .iter()
        .map(|g| {
            json!({"bool": {
                "must": g.include.iter().map(phrase_query).collect::<Vec<_>>(),
                "must_not": g.exclude.iter().map(phrase_query).collect::<Vec<_>>(),
            }})
        })
        .collect();
    json!({"bool": {"should": groups, "minimum_should_match": 1}})
}

/// The body of a `_search` request for `r`.
pub fn search_body(r: &SearchRequest) -> Value {
    let mut filter = vec![json!({"terms": {"workspace_id": r.workspaces}})];
    if let Some(kind) = r.kind {
        filter.push(json!({"term": {"kind": kind.as_str()}}));
    }
    if let Some(author) = r.author {
        filter.push(json!({"term": {"author_id": author}}));
    }
    if r.from.is_some() || r.to.is_some() {
        let mut range = serde_json::Map::new();
        if let Some(from) = r.from {
            range.insert("gte".into(), json!(from));
        }
        if let Some(to) = r.to {
            range.insert("lt".into(), json!(to));
        }
        filter.push(json!({"range": {"at": range}}));
    }
    let mut body = json!({
        "size": r.limit,
        "track_total_hits": false,
        "_source": ["kind", "id", "workspace_id", "document_id", "author_id", "at"],
        "query": {"bool": {"filter": filter, "must": [query_clause(&r.query)]}},
        "sort": [{"_score": "desc"}, {"kind": "asc"}, {"id": "asc"}]
    });
    if let Some(after) = r.after {
        body["search_after"] = json!([after.score, after.kind.as_str(), after.id]);
    }
    body
}

/// The hits of a `_search` response (`hits.hits[]`, each with `_source` and `sort`).
pub fn hits_of(response: &Value) -> Result<Vec<SearchHit>, String> {
    let hits = response["hits"]["hits"]
        .as_array()
        .ok_or("the response has no hits.hits")?;
    hits.iter()
        .map(|h| {
            let src = &h["_source"];
            let field = |name: &str| {
                src[name]
                    .as_i64()
                    .ok_or_else(|| format!("a hit has no {name}: {h}"))
            };
            let kind = src["kind"]
                .as_str()
                .and_then(HitKind::parse)
                .ok_or_else(|| format!("a hit has no kind: {h}"))?;
            let score = h["sort"][0]
                .as_f64()
                .or_else(|| h["_score"].as_f64())
                .unwrap_or(0.0);
            Ok(SearchHit {
                kind,
                id: field("id")?,
                workspace_id: field("workspace_id")?,
                document_id: field("document_id")?,
                author_id: src["author_id"].as_i64(),
                at: field("at")?,
                score,
            })
        })
        .collect()
}

/// What a batch of events asks of the index.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    /// Documents and comments to index as they are now (or delete, if they are gone).
    pub refresh: Vec<(HitKind, i64)>,
    /// Deleted outright.
    pub delete: Vec<(HitKind, i64)>,
    /// Documents deleted: their comments go too (the database removes them without events).
    pub deleted_documents: Vec<i64>,
}

/// The index changes a batch of events calls for, each named once.
pub fn changes_of(events: &[Event]) -> Changes {
    let mut c = Changes::default();
    let id_in = |e: &Event, field: &str| e.data.get(field).and_then(Value::as_i64);
    for e in events {
        let Some(kind) = e.known_kind() else {
            continue;
        };
        match kind {
            kind if kind.changes_document() => {
                if let Some(id) = id_in(e, "document_id") {
                    c.refresh.push((HitKind::Document, id));
                }
            }
            EventKind::DocumentDeleted => {
                if let Some(id) = id_in(e, "document_id") {
                    c.delete.push((HitKind::Document, id));
                    c.deleted_documents.push(id);
                }
            }
            EventKind::CommentDeleted => {
                if let Some(id) = id_in(e, "comment_id") {
                    c.delete.push((HitKind::Comment, id));
                }
            }
            kind if kind.is_comment() => {
                if let Some(id) = id_in(e, "comment_id") {
                    c.refresh.push((HitKind::Comment, id));
                }
            }
            // Membership is checked at query time; nothing else is indexed.
            _ => {}
        }
    }
    for list in [&mut c.refresh, &mut c.delete] {
        list.sort_unstable();
        list.dedup();
    }
    c.refresh.retain(|r| !c.delete.contains(r));
    c.deleted_documents.sort_unstable();
    c.deleted_documents.dedup();
    c
}

/// The lines of a `_bulk` request: index each of `rows` (external versions, so an older
/// version never replaces a newer one) and delete each of `gone`.
pub fn bulk_lines(rows: &[Indexable], gone: &[(HitKind, i64)]) -> Vec<Value> {
    let mut lines = Vec::with_capacity(rows.len() * 2 + gone.len());
    for r in rows {
        lines.push(json!({"index": {
            "_id": doc_id(r.kind, r.id),
            "version": r.version,
            "version_type": "external_gte",
        }}));
        lines.push(json!({
            "kind": r.kind.as_str(),
            "id": r.id,
            "workspace_id": r.workspace_id,
            "document_id": r.document_id,
            "author_id": r.author_id,
            "at": r.at,
            "version": r.version,
            "title": r.title,
            "body": r.body,
        }));
    }
    for (kind, id) in gone {
        lines.push(json!({"delete": {"_id": doc_id(*kind, *id)}}));
    }
    lines
}

/// The items of a `_bulk` response that failed. A version conflict (the index already holds
/// this version or a newer one) and deleting what is not there are what idempotency asks for,
/// not failures.
pub fn bulk_failures(response: &Value) -> Vec<String> {
    if response["errors"].as_bool() != Some(true) {
        return Vec::new();
    }
    let Some(items) = response["items"].as_array() else {
        return vec![format!("a bulk response without items: {response}")];
    };
    items
        .iter()
        .filter_map(|item| {
            let (action, result) = item.as_object()?.iter().next()?;
            let status = result["status"].as_u64().unwrap_or(0);
            let fine = (200..300).contains(&status)
                || status == 409
                || (action == "delete" && status == 404);
            (!fine).then(|| format!("{action} {}: {status} {}", result["_id"], result["error"]))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::HitKey;

    fn request(q: &str) -> SearchRequest {
        SearchRequest {
            user: 7,
            workspaces: vec![1, 2],
            query: SearchQuery::parse(q).unwrap(),
            kind: Some(HitKind::Document),
            author: Some(3),
            from: Some(1_000),
            to: None,
            after: Some(HitKey {
                score: 1.5,
                kind: HitKind::Document,
                id: 9,
            }),
            limit: 21,
        }
    }

    #[test]
    fn a_search_is_filters_phrases_and_a_keyset_sort() {
        let body = search_body(&request("\"road map\" plan* -draft OR budget"));
        assert_eq!(body["size"], 21);
        assert_eq!(
            body["query"]["bool"]["filter"],
            json!([
                {"terms": {"workspace_id": [1, 2]}},
                {"term": {"kind": "document"}},
                {"term": {"author_id": 3}},
                {"range": {"at": {"gte": 1000}}}
            ])
        );
        let groups = &body["query"]["bool"]["must"][0]["bool"]["should"];
        assert_eq!(groups.as_array().unwrap().len(), 2);
        assert_eq!(
            groups[0]["bool"]["must"][0],
            json!({"multi_match": {"query": "road map", "fields": ["title^10", "body"], "type": "phrase"}})
        );
        assert_eq!(
            groups[0]["bool"]["must"][1]["multi_match"]["type"],
            "phrase_prefix"
        );
        assert_eq!(
            groups[0]["bool"]["must_not"][0]["multi_match"]["query"],
            "draft"
        );
        assert_eq!(
            groups[1]["bool"]["must"][0]["multi_match"]["query"],
            "budget"
        );
        assert_eq!(
            body["sort"],
            json!([{"_score": "desc"}, {"kind": "asc"}, {"id": "asc"}])
        );
        assert_eq!(body["search_after"], json!([1.5, "document", 9]));
    }

    #[test]
    fn typed_operators_stay_words_in_the_request() {
        let body = search_body(&request("title:x {\"match_all\":{}} a*b"));
        let text = body.to_string();
        assert!(
            !text.contains("query_string") && !text.contains("match_all\":{}"),
            "{text}"
        );
        let must = &body["query"]["bool"]["must"][0]["bool"]["should"][0]["bool"]["must"];
        let queries: Vec<&str> = must
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["multi_match"]["query"].as_str().unwrap())
            .collect();
        assert_eq!(queries, ["title x", "match all", "a b"]);
    }

    #[test]
    fn hits_are_read_from_a_documented_search_response() {
        // The shape of https://www.elastic.co/guide/en/elasticsearch/reference/current/search-search.html
        let response = json!({
            "took": 5, "timed_out": false,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {
                "max_score": null,
                "hits": [
                    {"_index": "stoa", "_id": "d12", "_score": 2.5,
                     "_source": {"kind": "document", "id": 12, "workspace_id": 1, "document_id": 12, "author_id": 3, "at": 1700000000000i64},
                     "sort": [2.5, "document", 12]},
                    {"_index": "stoa", "_id": "c4", "_score": null,
                     "_source": {"kind": "comment", "id": 4, "workspace_id": 1, "document_id": 12, "author_id": null, "at": 1700000000001i64},
                     "sort": [0.75, "comment", 4]}
                ]
            }
        });
        let hits = hits_of(&response).unwrap();
        assert_eq!(hits.len(), 2);
        assert_eq!(
            (hits[0].kind, hits[0].id, hits[0].score),
            (HitKind::Document, 12, 2.5)
        );
        assert_eq!(
            (hits[1].kind, hits[1].author_id, hits[1].score),
            (HitKind::Comment, None, 0.75)
        );
        assert!(hits_of(&json!({"error": {"type": "index_not_found_exception"}})).is_err());
        assert!(hits_of(&json!({"hits": {"hits": [{"_source": {"kind": "folder"}}]}})).is_err());
    }

    #[test]
    fn bulk_requests_are_versioned_and_conflicts_are_not_failures() {
        let row = Indexable {
            kind: HitKind::Document,
            id: 5,
            workspace_id: 1,
            document_id: 5,
            author_id: Some(2),
            at: 10,
            version: 4,
            title: "T".into(),
            body: "B".into(),
        };
        let lines = bulk_lines(&[row], &[(HitKind::Comment, 8)]);
        assert_eq!(
            lines[0],
            json!({"index": {"_id": "d5", "version": 4, "version_type": "external_gte"}})
        );
        assert_eq!(lines[1]["title"], "T");
        assert_eq!(lines[2], json!({"delete": {"_id": "c8"}}));
        // The shape of https://www.elastic.co/guide/en/elasticsearch/reference/current/docs-bulk.html
        let response = json!({
            "took": 30, "errors": true,
            "items": [
                {"index": {"_index": "stoa", "_id": "d5", "status": 201, "result": "created"}},
                {"index": {"_index": "stoa", "_id": "d6", "status": 409,
                           "error": {"type": "version_conflict_engine_exception"}}},
                {"delete": {"_index": "stoa", "_id": "c8", "status": 404, "result": "not_found"}},
                {"index": {"_index": "stoa", "_id": "d7", "status": 429,
                           "error": {"type": "es_rejected_execution_exception"}}}
            ]
        });
        let failures = bulk_failures(&response);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].contains("d7") && failures[0].contains("429"));
        assert!(bulk_failures(&json!({"took": 1, "errors": false, "items": []})).is_empty());
    }

    #[test]
    fn events_name_each_thing_to_index_once() {
        let ev = |kind: &str, data: Value| Event {
            workspace_id: 1,
            offset: 1,
            kind: kind.into(),
            actor_id: Some(1),
            subject: String::new(),
            data,
            at: 0,
        };
        let changes = changes_of(&[
            ev("document.created", json!({"document_id": 1})),
            ev("document.edited", json!({"document_id": 1})),
            ev(
                "comment.created",
                json!({"comment_id": 3, "document_id": 1}),
            ),
            ev(
                "comment.resolved",
                json!({"comment_id": 3, "document_id": 1}),
            ),
            ev("document.updated", json!({"document_id": 2})),
            ev("document.deleted", json!({"document_id": 2})),
            ev("member.added", json!({"user_id": 5})),
            ev(
                "comment.deleted",
                json!({"comment_id": 4, "document_id": 1}),
            ),
        ]);
        assert_eq!(
            changes.refresh,
            [(HitKind::Comment, 3), (HitKind::Document, 1)]
        );
        assert_eq!(
            changes.delete,
            [(HitKind::Comment, 4), (HitKind::Document, 2)]
        );
        assert_eq!(changes.deleted_documents, [2]);
    }

    #[test]
    fn the_mapping_analyses_words_as_the_sql_backends_do() {
        let def = index_definition();
        assert_eq!(
            def["settings"]["analysis"]["tokenizer"]["stoa_words"]["pattern"],
            "[^\\p{L}\\p{N}]+"
        );
        assert_eq!(
            def["mappings"]["properties"]["title"]["analyzer"],
            "stoa_text"
        );
        assert_eq!(def["mappings"]["dynamic"], "strict");
    }
}
