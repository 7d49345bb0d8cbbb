//! The web console: the React app in `web/`, whose production build (`web/dist/`, committed
//! with the source) is embedded in the binary and served by every node at `/`.
//!
//! This module owns what a browser gets for a path that is not the API's: the bundle's files
//! with their content types, cache lifetimes, strong `ETag`s and gzip, `index.html` for every
//! client-side route (the single-page fallback), and the headers that mark a response as the
//! console's, so that [`crate::api::observe`] gives it the console's security policy instead
//! of the API's. In release builds the files are compiled in (`rust-embed`); debug builds read
//! the same folder from disk, so a rebuilt bundle is served without recompiling.

use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};
use dashmap::DashMap;
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "web/dist/"]
struct Bundle;

/// In a response's extensions: the response is the console's (see [`SECURITY_HEADERS`]).
#[derive(Debug, Clone, Copy)]
pub struct Console;

/// The console page's policy. Everything comes from the node itself: scripts only from its
/// own files (no inline script, no `eval`), and `connect-src 'self'`, which in CSP Level 3
/// browsers also covers `ws:`/`wss:` to the page's own host (the sockets at `/socket` and
/// `/yjs`; Chromium allows them so). `style-src` alone admits inline styles: antd's CSS-in-JS
/// inserts `<style>` elements at run time, and the editor sets `style` attributes. Images and
/// fonts may also be `data:` URLs, images and workers `blob:` ones; no plugins, no framing,
/// and `<base>` and forms only to the node.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; \
     connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'self'; \
     form-action 'self'; object-src 'none'";

/// On every response the console gives, in place of the API's headers: its policy, no
/// framing, no sniffing, and the page's address sent to its own origin only.
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("x-content-type-options", "nosniff"),
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("referrer-policy", "same-origin"),
    ("x-frame-options", "DENY"),
];

/// First path segments that are never the console's: the API, the sockets and operations.
const NOT_CONSOLE: [&str; 6] = ["api", "socket", "yjs", "healthz", "readyz", "metrics"];

/// Hashed file names under `assets/` never change their content.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Other files (the favicon) keep their name across builds.
const AN_HOUR: &str = "public, max-age=3600";
/// `index.html` names the current build's assets: revalidated on every load.
const REVALIDATE: &str = "no-cache";

/// Files at most this long are sent as they are.
const GZIP_MIN_BYTES: usize = 1024;

/// Gzipped bodies, made once per file content (keyed by its SHA-256) when first asked for.
static GZIPPED: LazyLock<DashMap<[u8; 32], Bytes>> = LazyLock::new(DashMap::new);

/// The console's answer to `req`: a file of the bundle, or `index.html` for any other GET or
/// HEAD whose last segment has no extension. `None` for other methods, for the API's, the
/// sockets' and the operations' paths, and for a missing file (`/assets/gone.js`), which the
/// caller answers with its problem (404 or 405): a missing script is never answered with HTML.
pub fn respond(req: &HttpRequest) -> Option<HttpResponse> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return None;
    }
    let name = target(req.path())?;
    Bundle::get(name).map(|file| serve(req, name, file))
}

/// Whether a GET of `path` is the console's (a file of the bundle or a page): other methods
/// on such a path are 405 with `Allow: GET, HEAD`.
pub fn owns(path: &str) -> bool {
    target(path).is_some_and(|name| Bundle::get(name).is_some())
}

/// The bundle's file that answers `path`: the file of that name, or `index.html` for a path
/// of the console's whose last segment has no extension.
fn target(path: &str) -> Option<&str> {
    let path = path.strip_prefix('/')?;
    let first = path.split('/').next().unwrap_or_default();
    if NOT_CONSOLE.contains(&first) {
        return None;
    }
    let name = if path.is_empty() { "index.html" } else { path };
    if plain(name) && Bundle::get(name).is_some() {
        return Some(name);
    }
    let last = path.rsplit('/').next().unwrap_or_default();
    (!last.contains('.')).then_some("index.html")
}

/// A name the bundle may hold: segments of letters, digits and `-_.~`, none of them `.` or
/// `..` or empty. Anything else is not looked up.
fn plain(name: &str) -> bool {
    name.split('/').all(|segment| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
    })
}

fn serve(req: &HttpRequest, name: &str, file: rust_embed::EmbeddedFile) -> HttpResponse {
    let extension = name.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
    let cache = if name == "index.html" {
        REVALIDATE
    } else if name.starts_with("assets/") {
        IMMUTABLE
    } else {
        AN_HOUR
    };
    let hash = file.metadata.sha256_hash();
    // Only these can differ by `Accept-Encoding`, so only these say `Vary`.
    let compressible = compressible(extension) && file.data.len() > GZIP_MIN_BYTES;
    let gzipped = (compressible && accepts_gzip(req))
        .then(|| gzipped(hash, &file.data))
        .filter(|gz| gz.len() < file.data.len());
    // A strong validator names one representation: the gzipped one has its own.
    let etag = format!(
        "\"{}{}\"",
        hex(&hash),
        if gzipped.is_some() { "-gzip" } else { "" }
    );

    let not_modified = none_match(req, &etag);
    let mut res = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, etag.as_str()))
        .insert_header((header::CACHE_CONTROL, cache));
    if compressible {
        res.insert_header((header::VARY, "Accept-Encoding"));
    }
    let mut res = if not_modified {
        res.finish()
    } else {
        res.insert_header((header::CONTENT_TYPE, content_type(extension)));
        // For HEAD, actix-http sends the length and not the body.
        match gzipped {
            Some(body) => res
                .insert_header((header::CONTENT_ENCODING, HeaderValue::from_static("gzip")))
                .body(body),
            None => res.body(match file.data {
                std::borrow::Cow::Borrowed(data) => Bytes::from_static(data),
                std::borrow::Cow::Owned(data) => Bytes::from(data),
            }),
        }
    };
    res.extensions_mut().insert(Console);
    res
}

fn content_type(extension: &str) -> &'static str {
    match extension {
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn compressible(extension: &str) -> bool {
    matches!(extension, "js" | "css" | "html" | "svg" | "json")
}

/// Whether `Accept-Encoding` admits gzip: named (or `x-gzip`), or `*`, with a q above 0.
fn accepts_gzip(req: &HttpRequest) -> bool {
    let mut gzip = None;
    let mut any = None;
    for value in req.headers().get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                gzip = Some(q);
            } else if coding == "*" {
                any = Some(q);
            }
        }
    }
    gzip.or(any).is_some_and(|q| q > 0.0)
}

/// `data` gzipped, made the first time this content is asked for and kept.
fn gzipped(hash: [u8; 32], data: &[u8]) -> Bytes {
    GZIPPED
        .entry(hash)
        .or_insert_with(|| {
            use std::io::Write;
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(data.len() / 3),
                flate2::Compression::best(),
            );
            // Writing to a Vec cannot fail.
            let _ = encoder.write_all(data);
            Bytes::from(encoder.finish().unwrap_or_default())
        })
        .clone()
}

/// Whether `If-None-Match` names `etag` (compared weakly, as RFC 9110 has it) or is `*`.
fn none_match(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn only_plain_names_are_looked_up() {
        assert!(plain("index.html"));
        assert!(plain("assets/index-BWKeROG6.js"));
        for name in [
            "../Cargo.toml",
            "assets/../index.html",
            "a//b",
            "a/./b",
            "a\\b",
            "%2e",
        ] {
            assert!(!plain(name), "{name}");
        }
    }

    #[test]
    fn gzip_is_what_accept_encoding_admits() {
        let admits = |value: &str| {
            accepts_gzip(
                &TestRequest::default()
                    .insert_header((header::ACCEPT_ENCODING, value))
                    .to_http_request(),
            )
        };
        assert!(admits("gzip, deflate, br, zstd"));
        assert!(admits("br;q=1.0, GZIP;q=0.5"));
        assert!(admits("*"));
        assert!(!admits("identity"));
        assert!(!admits("gzip;q=0, *"));
        assert!(!admits("br, *;q=0"));
        assert!(!accepts_gzip(&TestRequest::default().to_http_request()));
    }

    #[test]
    fn if_none_match_compares_weakly() {
        let matches = |value: &str| {
            none_match(
                &TestRequest::default()
                    .insert_header((header::IF_NONE_MATCH, value))
                    .to_http_request(),
                "\"ab\"",
            )
        };
        assert!(matches("\"ab\""));
        assert!(matches("\"x\", W/\"ab\""));
        assert!(matches("*"));
        assert!(!matches("\"ab-gzip\""));
    }

    #[test]
    fn the_api_sockets_and_operations_are_not_the_console() {
        let get = |path: &str| respond(&TestRequest::get().uri(path).to_http_request());
        for path in [
            "/api/v1/nope",
            "/api",
            "/socket/x",
            "/yjs/1",
            "/healthz",
            "/metrics",
        ] {
            assert!(get(path).is_none(), "{path}");
        }
        assert!(get("/assets/nope.js").is_none());
        let page = get("/workspaces/1").expect("the single-page fallback");
        assert_eq!(
            page.headers().get(header::CACHE_CONTROL).unwrap(),
            "no-cache"
        );
        assert!(page.extensions().contains::<Console>());
        let post = TestRequest::post().uri("/").to_http_request();
        assert!(respond(&post).is_none());
    }
}
