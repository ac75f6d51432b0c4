//! The `/file=` route: the resolver's decision turned into a response.
//!
//! Order matters: the syntactic refusal needs no file system and no session; then only a path
//! inside a data root is the proxy's business; then, with gradio auth on, the session is checked
//! *before* the file system is consulted, so an unauthenticated client learns nothing about
//! which files exist (it gets gradio's own 401); then the resolver runs on a blocking thread;
//! and the file itself is sent by `tower_http`'s `ServeFile`, which brings Range, `ETag`,
//! `Last-Modified`, conditional requests and the content type.

use std::io;
use std::sync::Arc;

use axum::body::Body;
use http::header::{self, HeaderValue};
use http::{Request, Response};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use tower_http::services::ServeFile;

use super::auth::Sessions;
use super::checked_open::CheckedFile;
use super::files::{Decision, FileRoots, Refusal, Target};
use super::forward::Backend;

/// Read size for served files: tokio's file reads hop to a blocking thread per chunk, so
/// chunks larger than `ServeFile`'s 64 KiB default cut that overhead for multi-megabyte images
/// (measured in `benches/proxy.rs`).
const FILE_CHUNK: usize = 256 * 1024;

/// What the `/file=` route needs from the proxy.
pub struct Context<'a> {
    /// The data roots of the current backend state.
    pub roots: &'a Arc<FileRoots>,
    /// gradio's session check, when gradio auth is on.
    pub sessions: Option<&'a Sessions>,
    /// gradio, for the session check.
    pub backend: &'a Backend,
}

/// Answers a GET or HEAD `/file=` request, or returns `None` when gradio should (the path is
/// not inside a data root, or gradio would not accept the client's session).
///
/// `raw_path` is the request path without the subpath prefix, still percent-encoded.
pub async fn respond(
    context: Context<'_>,
    parsed: Result<Target, Refusal>,
    raw_path: &str,
    request: &Request<Incoming>,
) -> Option<Response<Body>> {
    let target = match parsed {
        Ok(target) => target,
        Err(refusal) => {
            tracing::debug!(path = raw_path, ?refusal, "refusing /file= request");
            return Some(refusal_response(refusal, &lossy_display(raw_path)));
        }
    };
    if !context.roots.owns(&target) {
        return None;
    }
    if let Some(sessions) = context.sessions
        && !sessions.accepts(context.backend, request.headers()).await
    {
        tracing::debug!(path = %target.display, "no gradio session: gradio answers");
        return None;
    }
    let shown = target.display.clone();
    let roots = Arc::clone(context.roots);
    // The decision and the open of an approved file happen together: what is served is the
    // file that was checked (checked_open.rs). `Ok(None)`: gradio decides.
    let opened = tokio::task::spawn_blocking(move || match roots.resolve(&target) {
        Decision::Forward => Ok(None),
        Decision::Refuse(refusal) => Err(refusal),
        Decision::Serve(path) => CheckedFile::open(&path).map(Some),
    })
    .await
    .unwrap_or(Err(Refusal::NotAllowed));
    match opened {
        Ok(None) => None,
        Err(refusal) => {
            tracing::debug!(path = %shown, ?refusal, "/file= refused");
            Some(refusal_response(refusal, &shown))
        }
        Ok(Some(file)) => {
            tracing::debug!(path = %shown, file = %file.path().display(), "/file= served");
            Some(serve(&file, request, &shown).await)
        }
    }
}

async fn serve(file: &CheckedFile, request: &Request<Incoming>, display: &str) -> Response<Body> {
    let mut file_request = Request::new(Body::empty());
    *file_request.method_mut() = request.method().clone();
    *file_request.headers_mut() = request.headers().clone();
    // The content type comes from the approved path (the reopened one has no extension).
    let mime = mime_guess::from_path(file.path()).first_or_octet_stream();
    let mut service =
        ServeFile::new_with_mime(file.reopen_path(), &mime).with_buf_chunk_size(FILE_CHUNK);
    match service.try_call(file_request).await {
        Ok(response) => {
            let mut response = response.map(Body::new);
            response.headers_mut().insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            response
        }
        Err(err) => {
            tracing::debug!(path = %file.path().display(), error = %err, "serving a checked file failed");
            let refusal = if err.kind() == io::ErrorKind::NotFound {
                Refusal::NotFound
            } else {
                Refusal::NotAllowed
            };
            refusal_response(refusal, display)
        }
    }
}

/// gradio's refusal, in gradio's words (`{"detail": "File not allowed: <path>."}`).
fn refusal_response(refusal: Refusal, display: &str) -> Response<Body> {
    let detail = match refusal {
        Refusal::NotAllowed => format!("File not allowed: {display}."),
        Refusal::NotFound => format!("File not found: {display}."),
    };
    let body = serde_json::json!({ "detail": detail }).to_string();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = refusal.status();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The path part of a refused request for the message, whatever bytes it decodes to.
fn lossy_display(raw_path: &str) -> String {
    let decoded = percent_decode_str(raw_path).decode_utf8_lossy();
    let rest = decoded
        .strip_prefix("/file=")
        .or_else(|| decoded.strip_prefix("/file/"))
        .unwrap_or(&decoded);
    rest.replace('\0', "\u{FFFD}")
}
