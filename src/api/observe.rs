//! Request middleware: request ids, access logs and HTTP metrics, for every request
//! including those no route matched.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, Error};
use tracing::Instrument;

use super::AppState;
use crate::console::{self, Console};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// On every response but the console's ([`console::SECURITY_HEADERS`]). The API answers JSON,
/// CSV and plain text, never a page: nothing may be sniffed into HTML, and should a browser
/// render a response anyway, the policy lets it load, run, frame or submit nothing.
const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("x-content-type-options", "nosniff"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; sandbox",
    ),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
];

/// Keeps a caller's request id when it is short and plain, so ids can be traced across
/// services; otherwise makes a new one.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| crate::auth::random_hex(12))
}

/// The method as a metric label: the methods HTTP defines, and `OTHER` for every name a
/// client makes up, so that no request can add a series of its own.
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method as M;
    match *method {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        M::CONNECT => "CONNECT",
        M::TRACE => "TRACE",
        _ => "OTHER",
    }
}

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = request_id(&req);
    let state = req.app_data::<web::Data<AppState>>();
    let metrics = state.map(|s| s.metrics.clone());
    // Over TLS, browsers are told to come back over TLS only.
    let hsts = state.is_some_and(|s| s.tls_peers.is_some());
    let method = req.method().to_string();
    let method_label = method_label(req.method());
    let path = req.path().to_string();
    let span = tracing::info_span!("request", request_id = %id, method = %method, path = %path);
    let started = Instant::now();
    if let Some(m) = &metrics {
        m.http_in_flight.inc();
    }
    let result = next.call(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    if let Some(m) = &metrics {
        m.http_in_flight.dec();
    }
    let mut res = match result {
        Ok(res) => res,
        Err(e) => {
            span.in_scope(|| tracing::error!(error = %e, "request failed"));
            return Err(e);
        }
    };
    let status = res.status().as_u16();
    let console = res.response().extensions().contains::<Console>();
    // The console's files and pages are one route: none of its paths becomes a label.
    let route = if console {
        "console".to_string()
    } else {
        res.request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_string())
    };
    if let Some(m) = &metrics {
        m.http_requests
            .with_label_values(&[method_label, &route, &status.to_string()])
            .inc();
        m.http_duration
            .with_label_values(&[method_label, &route])
            .observe(elapsed.as_secs_f64());
    }
    span.in_scope(|| {
        let ms = elapsed.as_secs_f64() * 1000.0;
        // 503 is the server saying "not now" (database away, hashing busy), which a client
        // can bring about: a warning, not an error.
        if status >= 500 && status != 503 {
            tracing::error!(status, route = %route, duration_ms = ms, "request");
        } else if status == 503 {
            tracing::warn!(status, route = %route, duration_ms = ms, "request");
        } else {
            tracing::info!(status, route = %route, duration_ms = ms, "request");
        }
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    // The console's pages are pages, with a policy of their own; everything else the API's.
    let security = if console {
        console::SECURITY_HEADERS
    } else {
        SECURITY_HEADERS
    };
    let headers = res.headers_mut();
    for (name, value) in security {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    if hsts {
        headers.insert(
            HeaderName::from_static("strict-transport-security"),
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    Ok(res)
}
