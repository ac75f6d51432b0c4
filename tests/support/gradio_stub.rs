//! A stand-in for gradio in tests that need control over the backend's side: it records what
//! reached it and offers routes that stream, hold back, compress and speak websocket.
//!
//! - any path: answers 200 with JSON `{method, path, headers, body_len}` and hop-by-hop
//!   headers of its own (`Connection: x-hop-resp`, `X-Hop-Resp`, `Keep-Alive`);
//! - `/stream-upload`: signals `first_chunk` as soon as the first body chunk arrives;
//! - `/sse`: sends one event, waits for `release`, sends a second;
//! - `/gzip`: a gzip-encoded body, echoing the request's `Accept-Encoding`;
//! - `/ws`: a websocket echo.

#![allow(dead_code)] // Each test binary uses a different part.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use tokio::sync::Notify;

/// Fixed bytes the `/gzip` route claims are gzip.
pub const GZIP_BODY: &[u8] = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03compressed-looking";

/// One request as the stub saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
}

/// Shared between the stub's handlers and the test.
#[derive(Default)]
pub struct StubState {
    pub seen: Mutex<Vec<Seen>>,
    pub first_chunk: Notify,
    pub release: Notify,
}

/// A running stub.
pub struct Stub {
    pub addr: SocketAddr,
    pub state: Arc<StubState>,
    task: tokio::task::JoinHandle<()>,
}

impl Stub {
    /// Starts the stub on a free loopback port in the current runtime.
    pub async fn start() -> Stub {
        let state = Arc::new(StubState::default());
        let app = Router::new()
            .route("/stream-upload", any(stream_upload))
            .route("/sse", any(sse))
            .route("/gzip", any(gzip))
            .route("/ws", any(ws))
            .fallback(echo)
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind stub");
        let addr = listener.local_addr().expect("stub addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Stub { addr, state, task }
    }

    /// Requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("seen").clone()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn record(state: &StubState, request: &Request) {
    let seen = Seen {
        method: request.method().to_string(),
        path_and_query: request
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str().to_owned())
            .unwrap_or_default(),
        headers: request
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    };
    state.seen.lock().expect("seen").push(seen);
}

async fn echo(State(state): State<Arc<StubState>>, request: Request) -> Response {
    record(&state, &request);
    let (parts, body) = request.into_parts();
    let body_len = body
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.to_string())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let json = serde_json::json!({
        "method": parts.method.to_string(),
        "path": parts.uri.path_and_query().map(|pq| pq.as_str()).unwrap_or(""),
        "headers": headers,
        "body_len": body_len,
    });
    (
        [
            ("content-type", "application/json"),
            ("connection", "x-hop-resp"),
            ("x-hop-resp", "1"),
            ("keep-alive", "timeout=5"),
            ("x-end", "1"),
        ],
        json.to_string(),
    )
        .into_response()
}

async fn stream_upload(State(state): State<Arc<StubState>>, request: Request) -> Response {
    record(&state, &request);
    let mut body = request.into_body().into_data_stream();
    let mut total = 0usize;
    let mut first = true;
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else { break };
        total += chunk.len();
        if first && !chunk.is_empty() {
            first = false;
            state.first_chunk.notify_one();
        }
    }
    total.to_string().into_response()
}

async fn sse(State(state): State<Arc<StubState>>, request: Request) -> Response {
    record(&state, &request);
    let stream = futures_util::stream::unfold(0u8, move |step| {
        let state = Arc::clone(&state);
        async move {
            match step {
                0 => Some((
                    Ok::<_, std::io::Error>(Bytes::from_static(b"data: one\n\n")),
                    1,
                )),
                1 => {
                    state.release.notified().await;
                    Some((Ok(Bytes::from_static(b"data: two\n\n")), 2))
                }
                _ => None,
            }
        }
    });
    (
        [
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn gzip(State(state): State<Arc<StubState>>, request: Request) -> Response {
    record(&state, &request);
    let accept = request
        .headers()
        .get("accept-encoding")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (
        [
            ("content-encoding", "gzip".to_owned()),
            ("content-type", "text/plain".to_owned()),
            ("x-seen-accept-encoding", accept),
        ],
        GZIP_BODY,
    )
        .into_response()
}

async fn ws(
    State(state): State<Arc<StubState>>,
    upgrade: WebSocketUpgrade,
    request: Request,
) -> Response {
    record(&state, &request);
    upgrade.on_upgrade(echo_socket)
}

async fn echo_socket(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        let reply = match message {
            Message::Text(text) => Message::Text(format!("echo: {}", text.as_str()).into()),
            Message::Binary(bytes) => Message::Binary(bytes),
            Message::Close(_) => break,
            _ => continue,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
}
