//! Shared by the `tests/proxy_*.rs` binaries: a real gradio 3.41.2 app in a child process, the
//! proxy running in-process, and a raw HTTP/1.1 client that sends request targets byte for
//! byte (URL libraries normalize `..` and backslashes away, which would hide what is tested).
//!
//! gradio comes from the interpreter named by `SD_WEBUI_TEST_PYTHON` (a venv installed from
//! `tests/requirements-gradio.lock`). Without it the gradio tests print why and pass, unless
//! `SD_WEBUI_REQUIRE_GRADIO=1`, which makes a missing interpreter a failure (CI).

#![allow(dead_code)] // Each test binary uses a different part.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde::Deserialize;
use stable_diffusion_webui::proxy::{self, BackendState, ProxyConfig, ProxyError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

#[path = "prereq.rs"]
pub mod prereq;

/// The interpreter with gradio 3.41.2.
pub const PYTHON_VAR: &str = prereq::PYTHON_VAR;
/// Set to `1` to fail, not skip, when [`PYTHON_VAR`] is unset (as `SD_WEBUI_TEST_REQUIRE=1`
/// does).
pub const REQUIRE_VAR: &str = "SD_WEBUI_REQUIRE_GRADIO";

/// How long gradio may take to print READY (imports take a few seconds on a slow machine).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// The interpreter to run gradio with, or `None` (after a SKIP line) to skip the test. A named
/// interpreter must be usable ([`Gradio::start`] fails the test otherwise); none named is a
/// failure under [`REQUIRE_VAR`]`=1` or `SD_WEBUI_TEST_REQUIRE=1` (see [`prereq`]).
pub fn python_or_skip(test: &str) -> Option<PathBuf> {
    match std::env::var_os(PYTHON_VAR) {
        Some(python) if !python.is_empty() => Some(PathBuf::from(python)),
        _ => {
            if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") || prereq::python_required() {
                panic!(
                    "{test}: {PYTHON_VAR} is not set but {REQUIRE_VAR}=1 or {}=1",
                    prereq::REQUIRE_VAR
                );
            }
            prereq::skip(
                test,
                &format!(
                    "set {PYTHON_VAR} to a Python with gradio 3.41.2 \
                     (pip install -r tests/requirements-gradio.lock)"
                ),
            );
            None
        }
    }
}

/// The files `gradio_app.py` created, from its READY line.
#[derive(Debug, Clone, Deserialize)]
pub struct Files {
    pub data: PathBuf,
    pub outputs: PathBuf,
    pub image: PathBuf,
    pub big: PathBuf,
    pub script: PathBuf,
    pub plain: PathBuf,
    pub plain_image: PathBuf,
    pub plain_big: PathBuf,
}

/// How to start the app.
#[derive(Debug, Default, Clone)]
pub struct GradioOptions {
    /// `USER:PASS` for gradio's login.
    pub auth: Option<String>,
    /// gradio's `root_path`, e.g. `/sd`.
    pub root_path: Option<String>,
}

/// A running `gradio_app.py`; killed on drop.
pub struct Gradio {
    child: Child,
    pub addr: SocketAddr,
    pub files: Files,
    /// The fake home directory (its data dir is under `.local/share`).
    pub home: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Gradio {
    /// Starts the app and waits for READY.
    pub fn start(python: &Path, options: &GradioOptions) -> Gradio {
        // No leading dot in the temp dir's name: gradio must be able to serve the `plain` files.
        let dir = tempfile::Builder::new()
            .prefix("proxytest-")
            .tempdir()
            .expect("temp dir");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).expect("home");
        let port = free_port();
        let log = dir.path().join("gradio.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/gradio_app.py");
        let mut command = Command::new(python);
        command
            .arg(&script)
            .arg("--home")
            .arg(&home)
            .arg("--port")
            .arg(port.to_string())
            .env("GRADIO_ANALYTICS_ENABLED", "False")
            .env("HF_HUB_OFFLINE", "1")
            .env("HOME", &home)
            .env("MPLCONFIGDIR", dir.path().join("mpl"))
            .env("GRADIO_TEMP_DIR", dir.path().join("gradio-tmp"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file);
        if let Some(auth) = &options.auth {
            command.arg("--auth").arg(auth);
        }
        if let Some(root_path) = &options.root_path {
            command.arg("--root-path").arg(root_path);
        }
        let mut child = command.spawn().expect("start gradio_app.py");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(json) = line.strip_prefix("READY ") {
                    let _ = tx.send(json.to_owned());
                }
            }
        });
        let json = match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(json) => json,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("gradio_app.py did not get ready; its log:\n{log}");
            }
        };
        let files: Files = serde_json::from_str(&json).expect("READY json");
        Gradio {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            files,
            home,
            log,
            _dir: dir,
        }
    }

    /// The app's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The app's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The data roots the webui would report for this layout.
    pub fn file_roots(&self) -> Vec<PathBuf> {
        vec![self.files.data.clone(), self.files.outputs.clone()]
    }
}

impl Drop for Gradio {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("free port")
}

/// A proxy configuration for `backend` on a free loopback port.
pub fn config(backend: SocketAddr) -> ProxyConfig {
    ProxyConfig {
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        backend,
        subpath: None,
        tls: None,
        gradio_auth: false,
    }
}

/// The proxy serving on a tokio task of the test's runtime.
pub struct RunningProxy {
    pub addr: SocketAddr,
    pub addrs: Vec<SocketAddr>,
    pub state: watch::Sender<BackendState>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ProxyError>>,
}

impl RunningProxy {
    /// Binds and serves `config`, starting in `state`.
    pub async fn start(config: ProxyConfig, state: BackendState) -> RunningProxy {
        let bound = proxy::bind(config).await.expect("bind the proxy");
        let addrs = bound.local_addrs().to_vec();
        let (state_tx, state_rx) = watch::channel(state);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(bound.serve(state_rx, async move {
            let _ = stop_rx.await;
        }));
        RunningProxy {
            addr: addrs[0],
            addrs,
            state: state_tx,
            stop: Some(stop_tx),
            task,
        }
    }

    /// Ready with `roots`.
    pub async fn ready(backend: SocketAddr, roots: Vec<PathBuf>) -> RunningProxy {
        RunningProxy::start(
            config(backend),
            BackendState::Ready {
                file_roots: roots,
                working_dir: None,
                root_view: None,
            },
        )
        .await
    }

    /// `http://<addr>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Asks the proxy to stop and waits for `serve` to return.
    pub async fn stop(mut self) -> Result<(), ProxyError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve task")
    }
}

/// A response read by [`raw_request`].
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True when the body contains `needle`.
    pub fn body_contains(&self, needle: &[u8]) -> bool {
        !needle.is_empty() && self.body.windows(needle.len()).any(|w| w == needle)
    }
}

/// Sends `METHOD target HTTP/1.1` with the target exactly as given and reads the response.
pub async fn raw_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> RawResponse {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut bytes))
        .await
        .expect("response within 30 s")
        .expect("read");
    parse_response(&bytes, method == "HEAD")
}

/// `raw_request` for GET.
pub async fn raw_get(addr: SocketAddr, target: &str) -> RawResponse {
    raw_request(addr, "GET", target, &[]).await
}

fn parse_response(bytes: &[u8], head_only: bool) -> RawResponse {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("complete response head");
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let raw_body = &bytes[split + 4..];
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if head_only {
        raw_body.to_vec()
    } else if chunked {
        dechunk(raw_body)
    } else {
        raw_body.to_vec()
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = input.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&input[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim().to_owned();
        let Ok(size) = usize::from_str_radix(&size_text, 16) else {
            return out;
        };
        input = &input[line_end + 2..];
        if size == 0 || input.len() < size {
            return out;
        }
        out.extend_from_slice(&input[..size]);
        input = input.get(size + 2..).unwrap_or(&[]);
    }
}

/// Reads a whole file (test fixtures).
pub fn read(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    bytes
}

/// `/file=<path>` for an absolute path (our fixture paths need no escaping).
pub fn file_url(path: &Path) -> String {
    format!("/file={}", path.display())
}

/// A reqwest client that never uses a proxy from the environment and never follows redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The `fn_index` of the event with `api_name`, from gradio's `/config` at `base`.
pub async fn fn_index(base: &str, api_name: &str, cookie: Option<&str>) -> u64 {
    let mut request = client().get(format!("{base}/config"));
    if let Some(cookie) = cookie {
        request = request.header("Cookie", cookie);
    }
    let config: serde_json::Value = request
        .send()
        .await
        .expect("GET /config")
        .json()
        .await
        .expect("config json");
    config["dependencies"]
        .as_array()
        .expect("dependencies")
        .iter()
        .position(|d| d["api_name"] == api_name)
        .expect("the event is in the config") as u64
}

/// Runs one queued event over gradio 3.41's websocket protocol at `ws_url` and returns the
/// `output` of `process_completed`.
pub async fn queue_round_trip(
    ws_url: &str,
    fn_index: u64,
    cookie: Option<&str>,
) -> serde_json::Value {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let mut request = ws_url.into_client_request().expect("ws request");
    if let Some(cookie) = cookie {
        request
            .headers_mut()
            .insert("Cookie", cookie.parse().expect("cookie header"));
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket to /queue/join");
    let session = "proxytestsession";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("queue answered in time")
            .expect("socket open")
            .expect("message");
        let Message::Text(text) = message else {
            continue;
        };
        let message: serde_json::Value = serde_json::from_str(text.as_str()).expect("json message");
        match message["msg"].as_str().unwrap_or("") {
            "send_hash" => {
                let hello = serde_json::json!({"fn_index": fn_index, "session_hash": session});
                socket
                    .send(Message::text(hello.to_string()))
                    .await
                    .expect("send hash");
            }
            "send_data" => {
                let data = serde_json::json!({
                    "data": [], "fn_index": fn_index, "session_hash": session, "event_data": null
                });
                socket
                    .send(Message::text(data.to_string()))
                    .await
                    .expect("send data");
            }
            "process_completed" => {
                assert_eq!(message["success"], true, "event failed: {message}");
                let _ = socket.close(None).await;
                return message["output"].clone();
            }
            _ => {}
        }
    }
}

/// The file names (`/file=` targets) in a Gallery output `{"data": [[{name}, ...]]}`.
pub fn gallery_names(output: &serde_json::Value) -> Vec<String> {
    output["data"][0]
        .as_array()
        .expect("gallery list")
        .iter()
        .map(|item| item["name"].as_str().expect("name").to_owned())
        .collect()
}
