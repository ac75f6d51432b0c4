//! The `/file=` route: the resolver's decision turned into a response.
//!
//! Order matters: the syntactic refusal needs no file system and no session; then only a path
//! inside a data root is the proxy's business; then, with gradio auth on, the session is checked
//! *before* the file system is consulted, so an unauthenticated client learns nothing about
//! which files exist (it gets gradio's own 401); then the resolver runs on a blocking thread;
//! and the file itself is sent by `tower_http`'s `ServeFile`, which brings Range, `ETag`,
//! `Last-Modified`, conditional requests and the content type.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use http::header::{self, HeaderValue};
use http::{Request, Response};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use tower_http::services::ServeFile;

use super::auth::Sessions;
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
    let decision = tokio::task::spawn_blocking(move || roots.resolve(&target))
        .await
        .unwrap_or(Decision::Refuse(Refusal::NotAllowed));
    tracing::debug!(path = %shown, ?decision, "/file= decision");
    match decision {
        Decision::Forward => None,
        Decision::Refuse(refusal) => Some(refusal_response(refusal, &shown)),
        Decision::Serve(path) => Some(serve(path, request, &shown).await),
    }
}

async fn serve(path: PathBuf, request: &Request<Incoming>, display: &str) -> Response<Body> {
    let mut file_request = Request::new(Body::empty());
    *file_request.method_mut() = request.method().clone();
    *file_request.headers_mut() = request.headers().clone();
    let mut service = ServeFile::new(&path).with_buf_chunk_size(FILE_CHUNK);
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
            tracing::debug!(path = %path.display(), error = %err, "serving a checked file failed");
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
