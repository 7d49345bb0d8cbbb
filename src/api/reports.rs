//! `/api/v1/workspaces/{id}/reports/…`: activity over time, per member, per document and an
//! overview, for admins and owners. JSON by default; CSV (RFC 4180, a header row, a file
//! name in `Content-Disposition`) with `?format=csv` or `Accept: text/csv`.

use std::collections::{BTreeMap, BTreeSet};

use actix_web::http::header;
use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Problem};
use super::extract::{decode_cursor, AuthUser};
use super::AppState;
use crate::domain::{format_timestamp, now_ms, BucketUnit, Role, Zone};
use crate::store::{Page, PageRequest};
use crate::views::encode_cursor;

const DAY_MS: i64 = 24 * 3_600_000;

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Csv,
}

/// `?format=` wins; otherwise CSV when `Accept` names `text/csv`, JSON otherwise.
fn format_of(req: &HttpRequest, asked: Option<Format>) -> Format {
    asked.unwrap_or_else(|| {
        let accept = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let csv = accept.split(',').any(|part| {
            let mut params = part.split(';');
            let media = params.next().unwrap_or("").trim();
            let zero_q = params.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            });
            media.eq_ignore_ascii_case("text/csv") && !zero_q
        });
        if csv {
            Format::Csv
        } else {
            Format::Json
        }
    })
}

/// A spreadsheet runs a cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage
/// return as a formula; such text cells get a leading `'` (OWASP's advice for CSV export).
fn cell(text: &str) -> String {
    match text.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{text}"),
        _ => text.to_string(),
    }
}

fn csv_body(header_row: &[String], rows: &[Vec<String>]) -> Result<Vec<u8>, ApiError> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    let fail = |e: csv::Error| {
        tracing::error!(error = %e, "csv");
        ApiError::Internal
    };
    w.write_record(header_row).map_err(fail)?;
    for row in rows {
        w.write_record(row).map_err(fail)?;
    }
    w.into_inner().map_err(|e| {
        tracing::error!(error = %e, "csv");
        ApiError::Internal
    })
}

fn csv_response(
    ws: i64,
    report: &str,
    header_row: &[String],
    rows: &[Vec<String>],
    next: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let body = csv_body(header_row, rows)?;
    let date = &format_timestamp(now_ms())[..10];
    let mut res = HttpResponse::Ok();
    res.content_type("text/csv; charset=utf-8").insert_header((
        header::CONTENT_DISPOSITION,
        format!("attachment; filename=\"workspace-{ws}-{report}-{date}.csv\""),
    ));
    if let Some(cursor) = next {
        res.insert_header((
            header::LINK,
            format!("<?format=csv&cursor={cursor}>; rel=\"next\""),
        ));
    }
    Ok(res.body(body))
}

fn names(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------
// Activity over time

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ActivityQuery {
    /// Start of the range: RFC 3339, or a date (that day's start in `tz`). Default (also
    /// when empty): 30 days before `to`.
    #[param(
        pattern = "^([0-9]{4}-[0-9]{2}-[0-9]{2}([Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2}))?)?$"
    )]
    pub from: Option<String>,
    /// End of the range (exclusive), as `from`. Default (also when empty): now.
    #[param(
        pattern = "^([0-9]{4}-[0-9]{2}-[0-9]{2}([Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2}))?)?$"
    )]
    pub to: Option<String>,
    /// `hour`, `day` (default) or `week` (ISO weeks, Monday first).
    pub bucket: Option<BucketUnit>,
    /// IANA time zone whose midnight and hours the buckets follow (default, also when
    /// empty: `UTC`).
    #[param(pattern = "^[A-Za-z0-9/_+-]{0,64}$")]
    pub tz: Option<String>,
    /// `json` (default) or `csv`; overrides `Accept`.
    pub format: Option<Format>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActivityBucket {
    /// RFC 3339 with the zone's offset at that instant.
    pub start: String,
    pub end: String,
    pub total: i64,
    /// Events per kind; kinds without events are left out.
    pub by_kind: BTreeMap<String, i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActivityReport {
    pub workspace_id: i64,
    pub bucket: BucketUnit,
    pub tz: String,
    /// Start of the first bucket.
    pub from: String,
    /// End of the last bucket.
    pub to: String,
    pub total: i64,
    /// Every kind that occurs in the range, sorted.
    pub kinds: Vec<String>,
    /// Every bucket of the range, oldest first, empty ones included.
    pub buckets: Vec<ActivityBucket>,
}

/// Events over time, per kind, in hour, day or week buckets of a time zone.
#[utoipa::path(
    tag = "reports",
    params(("id" = i64, Path, description = "Workspace id"), ActivityQuery),
    responses(
        (status = 200, description = "The report", content(
            (ActivityReport = "application/json"),
            (String = "text/csv"),
        )),
        (status = 403, description = "Below admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad range, zone or too many buckets", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/workspaces/{id}/reports/activity")]
pub async fn activity_report(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
    query: web::Query<ActivityQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let ws = *id;
    let given = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_string);
    let (tz, from, to) = (given(&query.tz), given(&query.from), given(&query.to));
    let zone = match tz.as_deref() {
        None => Zone::utc(),
        Some(name) => Zone::parse(name).map_err(|m| ApiError::validation("tz", m))?,
    };
    let unit = query.bucket.unwrap_or(BucketUnit::Day);
    let to = match to.as_deref() {
        None => now_ms(),
        Some(t) => zone
            .parse_instant(t)
            .map_err(|m| ApiError::validation("to", m))?,
    };
    let from = match from.as_deref() {
        None => to.saturating_sub(30 * DAY_MS),
        Some(t) => zone
            .parse_instant(t)
            .map_err(|m| ApiError::validation("from", m))?,
    };
    let buckets = zone
        .buckets(unit, from, to)
        .map_err(|m| ApiError::validation("from", m))?;
    let counts = state.store.activity_report(user.id, ws, &buckets).await?;
    let mut by_bucket: Vec<BTreeMap<String, i64>> = vec![BTreeMap::new(); buckets.len()];
    let mut kinds = BTreeSet::new();
    for (i, kind, n) in counts {
        kinds.insert(kind.clone());
        by_bucket[i].insert(kind, n);
    }
    let kinds: Vec<String> = kinds.into_iter().collect();
    let report = ActivityReport {
        workspace_id: ws,
        bucket: unit,
        tz: zone.name.clone(),
        from: zone.format(buckets[0].0),
        to: zone.format(buckets[buckets.len() - 1].1),
        total: by_bucket.iter().flat_map(|b| b.values()).sum(),
        buckets: buckets
            .iter()
            .zip(by_bucket)
            .map(|((lo, hi), by_kind)| ActivityBucket {
                start: zone.format(*lo),
                end: zone.format(*hi),
                total: by_kind.values().sum(),
                by_kind,
            })
            .collect(),
        kinds,
    };
    if format_of(&req, query.format) == Format::Json {
        return Ok(HttpResponse::Ok().json(report));
    }
    let mut header_row = names(&["start", "end", "total"]);
    header_row.extend(report.kinds.iter().map(|k| cell(k)));
    let rows: Vec<Vec<String>> = report
        .buckets
        .iter()
        .map(|b| {
            let mut row = vec![b.start.clone(), b.end.clone(), b.total.to_string()];
            row.extend(
                report
                    .kinds
                    .iter()
                    .map(|k| b.by_kind.get(k).copied().unwrap_or(0).to_string()),
            );
            row
        })
        .collect();
    csv_response(ws, "activity", &header_row, &rows, None)
}

// ---------------------------------------------------------------------------------------
// Per member and per document

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportPageQuery {
    /// Rows per page, 1 to 10000 (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page (CSV: the `Link` header's `rel="next"`).
    #[param(pattern = "^([0-9]{1,18})?$")]
    pub cursor: Option<String>,
    /// `json` (default) or `csv`; overrides `Accept`.
    pub format: Option<Format>,
}

impl ReportPageQuery {
    fn to_request(&self) -> Result<PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(1000);
        if !(1..=10_000).contains(&limit) {
            return Err(ApiError::validation("limit", "must be between 1 and 10000"));
        }
        let after = match self.cursor.as_deref() {
            Some(c) => decode_cursor(c)?,
            None => None,
        };
        Ok(PageRequest { after, limit })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberReportRow {
    pub user_id: i64,
    pub display_name: String,
    pub email: String,
    pub role: Role,
    pub joined_at: String,
    /// Events with this member as actor.
    pub events: i64,
    pub documents_created: i64,
    /// Distinct documents edited (deleted ones included).
    pub documents_edited: i64,
    /// Edits: REST changes and windows of live editing.
    pub edits: i64,
    /// Comments written.
    pub comments: i64,
    /// RFC 3339; null if never active.
    pub last_active: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberReport {
    pub items: Vec<MemberReportRow>,
    pub next_cursor: Option<String>,
}

/// Activity per current member, by user id.
#[utoipa::path(
    tag = "reports",
    params(("id" = i64, Path, description = "Workspace id"), ReportPageQuery),
    responses(
        (status = 200, description = "The report", content(
            (MemberReport = "application/json"),
            (String = "text/csv"),
        )),
        (status = 403, description = "Below admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid `limit`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/workspaces/{id}/reports/members")]
pub async fn member_report(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
    query: web::Query<ReportPageQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let page = state
        .store
        .member_report(user.id, *id, query.to_request()?)
        .await?;
    let next_cursor = page.next.map(encode_cursor);
    let items: Vec<MemberReportRow> = page
        .items
        .iter()
        .map(|a| MemberReportRow {
            user_id: a.member.user_id,
            display_name: a.member.display_name.clone(),
            email: a.member.email.clone(),
            role: a.member.role,
            joined_at: format_timestamp(a.member.joined_at),
            events: a.events,
            documents_created: a.documents_created,
            documents_edited: a.documents_edited,
            edits: a.edits,
            comments: a.comments,
            last_active: a.last_active.map(format_timestamp),
        })
        .collect();
    if format_of(&req, query.format) == Format::Json {
        return Ok(HttpResponse::Ok().json(MemberReport { items, next_cursor }));
    }
    let header_row = names(&[
        "user_id",
        "display_name",
        "email",
        "role",
        "joined_at",
        "events",
        "documents_created",
        "documents_edited",
        "edits",
        "comments",
        "last_active",
    ]);
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|m| {
            vec![
                m.user_id.to_string(),
                cell(&m.display_name),
                cell(&m.email),
                m.role.to_string(),
                m.joined_at.clone(),
                m.events.to_string(),
                m.documents_created.to_string(),
                m.documents_edited.to_string(),
                m.edits.to_string(),
                m.comments.to_string(),
                m.last_active.clone().unwrap_or_default(),
            ]
        })
        .collect();
    csv_response(*id, "members", &header_row, &rows, next_cursor.as_deref())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentReportRow {
    pub document_id: i64,
    pub title: String,
    pub version: i64,
    pub created_by: Option<i64>,
    pub created_at: String,
    /// Edits: REST changes and windows of live editing.
    pub edits: i64,
    pub comments: i64,
    /// Distinct members who edited it.
    pub editors: i64,
    /// RFC 3339: the newest event about the document.
    pub last_activity: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentReport {
    pub items: Vec<DocumentReportRow>,
    pub next_cursor: Option<String>,
}

/// Activity per document, by document id.
#[utoipa::path(
    tag = "reports",
    params(("id" = i64, Path, description = "Workspace id"), ReportPageQuery),
    responses(
        (status = 200, description = "The report", content(
            (DocumentReport = "application/json"),
            (String = "text/csv"),
        )),
        (status = 403, description = "Below admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid `limit`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/workspaces/{id}/reports/documents")]
pub async fn document_report(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
    query: web::Query<ReportPageQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let page: Page<_> = state
        .store
        .document_report(user.id, *id, query.to_request()?)
        .await?;
    let next_cursor = page.next.map(encode_cursor);
    let items: Vec<DocumentReportRow> = page
        .items
        .iter()
        .map(|a| DocumentReportRow {
            document_id: a.document.id,
            title: a.document.title.clone(),
            version: a.document.version,
            created_by: a.document.created_by,
            created_at: format_timestamp(a.document.created_at),
            edits: a.edits,
            comments: a.comments,
            editors: a.editors,
            last_activity: a.last_activity.map(format_timestamp),
        })
        .collect();
    if format_of(&req, query.format) == Format::Json {
        return Ok(HttpResponse::Ok().json(DocumentReport { items, next_cursor }));
    }
    let header_row = names(&[
        "document_id",
        "title",
        "version",
        "created_by",
        "created_at",
        "edits",
        "comments",
        "editors",
        "last_activity",
    ]);
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|d| {
            vec![
                d.document_id.to_string(),
                cell(&d.title),
                d.version.to_string(),
                d.created_by.map(|u| u.to_string()).unwrap_or_default(),
                d.created_at.clone(),
                d.edits.to_string(),
                d.comments.to_string(),
                d.editors.to_string(),
                d.last_activity.clone().unwrap_or_default(),
            ]
        })
        .collect();
    csv_response(*id, "documents", &header_row, &rows, next_cursor.as_deref())
}

// ---------------------------------------------------------------------------------------
// Overview

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FormatQuery {
    /// `json` (default) or `csv`; overrides `Accept`.
    pub format: Option<Format>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MembersByRole {
    pub owner: i64,
    pub admin: i64,
    pub editor: i64,
    pub viewer: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OverviewReport {
    pub workspace_id: i64,
    /// When it was computed (RFC 3339).
    pub at: String,
    pub members: i64,
    pub members_by_role: MembersByRole,
    pub documents: i64,
    pub comments: i64,
    /// Events logged.
    pub events: i64,
    /// Distinct users with an event in the last 7 days.
    pub active_users_7d: i64,
    /// Distinct users with an event in the last 30 days.
    pub active_users_30d: i64,
}

/// The workspace at a glance: members by role, documents, comments, active users.
#[utoipa::path(
    tag = "reports",
    params(("id" = i64, Path, description = "Workspace id"), FormatQuery),
    responses(
        (status = 200, description = "The report", content(
            (OverviewReport = "application/json"),
            (String = "text/csv"),
        )),
        (status = 403, description = "Below admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace, or not a member", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/workspaces/{id}/reports/overview")]
pub async fn overview_report(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
    query: web::Query<FormatQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let now = now_ms();
    let o = state
        .store
        .overview_report(user.id, *id, &[now - 7 * DAY_MS, now - 30 * DAY_MS])
        .await?;
    let role = |r: Role| {
        o.members_by_role
            .iter()
            .find(|(x, _)| *x == r)
            .map_or(0, |(_, n)| *n)
    };
    let report = OverviewReport {
        workspace_id: *id,
        at: format_timestamp(now),
        members: o.members_by_role.iter().map(|(_, n)| n).sum(),
        members_by_role: MembersByRole {
            owner: role(Role::Owner),
            admin: role(Role::Admin),
            editor: role(Role::Editor),
            viewer: role(Role::Viewer),
        },
        documents: o.documents,
        comments: o.comments,
        events: o.events,
        active_users_7d: o.active_users[0],
        active_users_30d: o.active_users[1],
    };
    if format_of(&req, query.format) == Format::Json {
        return Ok(HttpResponse::Ok().json(report));
    }
    let header_row = names(&[
        "at",
        "members",
        "owners",
        "admins",
        "editors",
        "viewers",
        "documents",
        "comments",
        "events",
        "active_users_7d",
        "active_users_30d",
    ]);
    let r = &report;
    let row = vec![
        r.at.clone(),
        r.members.to_string(),
        r.members_by_role.owner.to_string(),
        r.members_by_role.admin.to_string(),
        r.members_by_role.editor.to_string(),
        r.members_by_role.viewer.to_string(),
        r.documents.to_string(),
        r.comments.to_string(),
        r.events.to_string(),
        r.active_users_7d.to_string(),
        r.active_users_30d.to_string(),
    ];
    csv_response(*id, "overview", &header_row, &[row], None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn accept_chooses_csv_unless_refused_and_format_wins() {
        let req = |accept: &str| {
            TestRequest::default()
                .insert_header((header::ACCEPT, accept))
                .to_http_request()
        };
        assert_eq!(format_of(&req("text/csv"), None), Format::Csv);
        assert_eq!(
            format_of(&req("application/json, TEXT/CSV;q=0.5"), None),
            Format::Csv
        );
        assert_eq!(format_of(&req("text/csv;q=0"), None), Format::Json);
        assert_eq!(format_of(&req("*/*"), None), Format::Json);
        assert_eq!(
            format_of(&req("text/csv"), Some(Format::Json)),
            Format::Json
        );
    }

    #[test]
    fn formula_like_cells_are_defused() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("plain, \"quoted\""), "plain, \"quoted\"");
    }
}
