//! A loopback HTTP server for downloader tests: serves named objects with ETag,
//! Last-Modified and single-range support, and misbehaves on request: drops the connection
//! after N bytes, stalls, trickles, answers a fixed status, changes the object, ignores
//! `If-Range`. It counts every body byte it hands out so tests can prove a resume did not
//! fetch the prefix again.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;

/// One file the server offers.
#[derive(Clone)]
pub struct Object {
    pub bytes: Bytes,
    pub etag: String,
    pub last_modified: String,
}

impl Object {
    pub fn new(bytes: impl Into<Bytes>, etag: &str) -> Object {
        Object {
            bytes: bytes.into(),
            etag: format!("\"{etag}\""),
            last_modified: "Mon, 01 Jan 2024 00:00:00 GMT".into(),
        }
    }
}

/// Deterministic, incompressible-looking test data.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// What the next request(s) get; each `VecDeque` is consumed one entry per request.
#[derive(Default)]
pub struct Script {
    /// Send this many body bytes, then break the connection.
    pub drop_after: VecDeque<u64>,
    /// Send this many body bytes, then go silent (the client's read timeout fires).
    pub stall_after: VecDeque<u64>,
    /// Answer with this status and no body.
    pub status: VecDeque<StatusCode>,
    /// After this request is answered, replace the object (for "changed between attempts").
    pub replace_after_request: Option<(String, Object)>,
    /// Answer `Range` requests with 206 (false: always 200).
    pub ignore_range: bool,
    /// Serve a range even when `If-Range` no longer matches (a non-conforming server).
    pub ignore_if_range: bool,
    /// Delay between body chunks, and the chunk size.
    pub trickle: Option<(Duration, usize)>,
    /// Announce this Content-Length instead of the real one (and send nothing).
    pub claim_length: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Logged {
    pub path: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub authorization: Option<String>,
    pub status: u16,
}

#[derive(Default)]
pub struct Shared {
    pub objects: Mutex<BTreeMap<String, Object>>,
    pub json: Mutex<BTreeMap<String, String>>,
    pub script: Mutex<Script>,
    pub log: Mutex<Vec<Logged>>,
    /// Body bytes handed to the connection, over all requests.
    pub served: AtomicU64,
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Start on 127.0.0.1 (a random port) on its own thread and runtime, so both async and
    /// blocking (`assert_cmd`) tests can use it.
    pub fn start() -> TestServer {
        let shared = Arc::new(Shared::default());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("address");
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .route("/files/{name}", get(serve_file))
            .route("/json/{*path}", get(serve_json))
            .with_state(shared.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("serve");
            });
            runtime.shutdown_timeout(Duration::from_millis(100));
        });
        TestServer {
            addr,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://{}/files/{name}", self.addr)
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn put(&self, name: &str, object: Object) {
        self.shared
            .objects
            .lock()
            .unwrap()
            .insert(name.to_owned(), object);
    }

    /// Serve `body` at `/json/<path>` (mock Hub and Civitai APIs).
    pub fn put_json(&self, path: &str, body: &str) {
        self.shared
            .json
            .lock()
            .unwrap()
            .insert(path.to_owned(), body.to_owned());
    }

    pub fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.shared.script.lock().unwrap()
    }

    pub fn served(&self) -> u64 {
        self.shared.served.load(Ordering::SeqCst)
    }

    pub fn log(&self) -> Vec<Logged> {
        self.shared.log.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        // Graceful shutdown waits for open connections; don't block a test on a stalled one.
        if let Some(thread) = self.thread.take() {
            drop(thread);
        }
    }
}

async fn serve_json(State(shared): State<Arc<Shared>>, Path(path): Path<String>) -> Response {
    match shared.json.lock().unwrap().get(&path) {
        Some(body) => ([(header::CONTENT_TYPE, "application/json")], body.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn serve_file(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut logged = Logged {
        path: name.clone(),
        range: text(header::RANGE),
        if_range: text(header::IF_RANGE),
        authorization: text(header::AUTHORIZATION),
        status: 0,
    };
    let object = shared.objects.lock().unwrap().get(&name).cloned();
    let claim_length = shared.script.lock().unwrap().claim_length;
    if let Some(length) = claim_length {
        let mut logged = logged;
        logged.status = 200;
        shared.log.lock().unwrap().push(logged);
        let body =
            Body::from_stream(futures_util::stream::pending::<Result<Bytes, std::io::Error>>());
        return (
            StatusCode::OK,
            [(header::CONTENT_LENGTH, length.to_string())],
            body,
        )
            .into_response();
    }
    let (status_override, drop_after, stall_after, trickle, ignore_range, ignore_if_range, replace) = {
        let mut script = shared.script.lock().unwrap();
        (
            script.status.pop_front(),
            script.drop_after.pop_front(),
            script.stall_after.pop_front(),
            script.trickle,
            script.ignore_range,
            script.ignore_if_range,
            script.replace_after_request.take(),
        )
    };
    if let Some((name, object)) = replace {
        shared.objects.lock().unwrap().insert(name, object);
    }
    let response = match (status_override, object) {
        (Some(status), _) => status.into_response(),
        (None, None) => StatusCode::NOT_FOUND.into_response(),
        (None, Some(object)) => respond(
            &shared,
            &object,
            logged.range.as_deref(),
            logged.if_range.as_deref(),
            Behaviour {
                drop_after,
                stall_after,
                trickle,
                ignore_range,
                ignore_if_range,
            },
        ),
    };
    logged.status = response.status().as_u16();
    shared.log.lock().unwrap().push(logged);
    response
}

struct Behaviour {
    drop_after: Option<u64>,
    stall_after: Option<u64>,
    trickle: Option<(Duration, usize)>,
    ignore_range: bool,
    ignore_if_range: bool,
}

fn respond(
    shared: &Arc<Shared>,
    object: &Object,
    range: Option<&str>,
    if_range: Option<&str>,
    behaviour: Behaviour,
) -> Response {
    let len = object.bytes.len() as u64;
    let validator_ok = if_range
        .is_none_or(|v| behaviour.ignore_if_range || v == object.etag || v == object.last_modified);
    let start = range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|_| !behaviour.ignore_range && validator_ok);
    let mut response_headers = HeaderMap::new();
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: String| {
        h.insert(name, HeaderValue::from_str(&value).expect("header"));
    };
    set(&mut response_headers, header::ETAG, object.etag.clone());
    set(
        &mut response_headers,
        header::LAST_MODIFIED,
        object.last_modified.clone(),
    );
    set(&mut response_headers, header::ACCEPT_RANGES, "bytes".into());
    let (status, body) = match start {
        Some(start) if start >= len => {
            set(
                &mut response_headers,
                header::CONTENT_RANGE,
                format!("bytes */{len}"),
            );
            return (StatusCode::RANGE_NOT_SATISFIABLE, response_headers).into_response();
        }
        Some(start) => {
            set(
                &mut response_headers,
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{len}", len - 1),
            );
            (
                StatusCode::PARTIAL_CONTENT,
                object.bytes.slice(start as usize..),
            )
        }
        None => (StatusCode::OK, object.bytes.clone()),
    };
    set(
        &mut response_headers,
        header::CONTENT_LENGTH,
        body.len().to_string(),
    );
    let shared = shared.clone();
    let chunk_size = behaviour.trickle.map_or(64 * 1024, |(_, size)| size);
    let stream = async_stream(body, chunk_size, shared, behaviour);
    (status, response_headers, Body::from_stream(stream)).into_response()
}

/// The body as a stream of chunks, with the scripted failure at the scripted byte.
fn async_stream(
    body: Bytes,
    chunk_size: usize,
    shared: Arc<Shared>,
    behaviour: Behaviour,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let cut = behaviour.drop_after.or(behaviour.stall_after);
    futures_util::stream::unfold(0usize, move |sent| {
        let body = body.clone();
        let shared = shared.clone();
        let trickle = behaviour.trickle;
        let dropping = behaviour.drop_after.is_some();
        async move {
            let limit = cut.map_or(body.len(), |c| (c as usize).min(body.len()));
            if sent >= limit {
                if cut.is_some() && sent < body.len() {
                    // Give the connection time to flush what was sent, then fail.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if dropping {
                        return Some((Err(std::io::Error::other("scripted drop")), usize::MAX));
                    }
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return Some((
                        Err(std::io::Error::other("scripted stall ended")),
                        usize::MAX,
                    ));
                }
                return None;
            }
            if let Some((delay, _)) = trickle {
                tokio::time::sleep(delay).await;
            }
            let end = (sent + chunk_size).min(limit);
            let chunk = body.slice(sent..end);
            shared
                .served
                .fetch_add(chunk.len() as u64, Ordering::SeqCst);
            Some((Ok(chunk), end))
        }
    })
}
