//! Proxy benchmark and soak against a real gradio 3.41.2 (not tests: every function here is
//! `#[ignore]`d and only runs when asked for). See `benches/README.md`; in short:
//!
//! ```sh
//! SD_WEBUI_TEST_PYTHON=/path/to/venv/bin/python benches/proxy.sh        # benchmark + soak
//! ```
//!
//! The proxy runs in its own process (this binary re-executed with `proxy_server`), so its
//! memory can be read from `/proc` and it does not share a runtime with the load generator.
//!
//! - `bench`: (a) a small API call (`POST /api/echo`) direct to gradio vs through the proxy:
//!   latency at concurrency 1 (p50/p99, added time) and requests/s at concurrency 16;
//!   (b) a 1 MB PNG via `/file=`: gradio serving a dot-free copy vs the proxy serving the
//!   dot-directory original, requests/s and latency at concurrency 16. Prints each pair and
//!   the ratio.
//! - `soak`: 60 s, 50 concurrent clients mixing API calls, small and large files and queued
//!   events over the websocket, through the proxy; counts errors and samples the proxy's RSS.

#[path = "../tests/support/gradio_harness.rs"]
mod harness;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use stable_diffusion_webui::proxy::{self, BackendState, ProxyConfig};
use tokio_tungstenite::tungstenite::Message;

const BACKEND_VAR: &str = "PROXY_BENCH_BACKEND";
const ROOTS_VAR: &str = "PROXY_BENCH_ROOTS";
const LISTENING: &str = "PROXY_LISTENING ";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// The proxy alone, for the benchmark's child process: serves until stdin closes.
#[test]
#[ignore = "started by `bench` and `soak` as a child process"]
fn proxy_server() {
    let Ok(backend) = std::env::var(BACKEND_VAR) else {
        return;
    };
    let backend: SocketAddr = backend.parse().expect("backend address");
    let roots: Vec<PathBuf> = std::env::var(ROOTS_VAR)
        .unwrap_or_default()
        .split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let config = ProxyConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            backend,
            subpath: None,
            tls: None,
            gradio_auth: false,
        };
        let bound = proxy::bind(config).await.expect("bind");
        println!("{LISTENING}{}", bound.local_addrs()[0]);
        let (_state, state_rx) = tokio::sync::watch::channel(BackendState::Ready {
            file_roots: roots,
            working_dir: None,
            root_view: None,
        });
        let stdin_closed = async {
            let _ = tokio::task::spawn_blocking(|| {
                std::io::copy(&mut std::io::stdin(), &mut std::io::sink())
            })
            .await;
        };
        bound.serve(state_rx, stdin_closed).await.expect("serve");
    });
}

/// The proxy child process; killed on drop.
struct ProxyProcess {
    child: Child,
    addr: SocketAddr,
}

impl ProxyProcess {
    fn start(gradio: &harness::Gradio) -> ProxyProcess {
        let roots = gradio
            .file_roots()
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let mut child = Command::new(std::env::current_exe().expect("current exe"))
            .args([
                "--ignored",
                "--exact",
                "proxy_server",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(BACKEND_VAR, gradio.addr.to_string())
            .env(ROOTS_VAR, roots)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the proxy process");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines.next().expect("proxy output").expect("line");
            // libtest prints `test proxy_server ... ` on the same line first.
            if let Some((_, addr)) = line.split_once(LISTENING) {
                break addr.trim().parse().expect("proxy address");
            }
        };
        std::thread::spawn(move || for _ in lines.by_ref() {});
        ProxyProcess { child, addr }
    }

    /// Resident memory of the proxy process in KiB (Linux).
    fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// CPU seconds (user + system) the proxy process used so far (Linux).
    fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(self.child.id())
    }
}

/// CPU seconds (user + system) process `pid` used so far (Linux; clock ticks of 10 ms).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone)]
struct Target {
    method: hyper::Method,
    uri: hyper::Uri,
    body: Bytes,
}

impl Target {
    fn echo(addr: SocketAddr) -> Target {
        Target {
            method: hyper::Method::POST,
            uri: format!("http://{addr}/api/echo").parse().expect("uri"),
            body: Bytes::from_static(br#"{"data":["hi"]}"#),
        }
    }

    fn file(addr: SocketAddr, path: &std::path::Path) -> Target {
        Target {
            method: hyper::Method::GET,
            uri: format!("http://{addr}/file={}?1700000000.5", path.display())
                .parse()
                .expect("uri"),
            body: Bytes::new(),
        }
    }

    fn request(&self) -> hyper::Request<Full<Bytes>> {
        let mut request = hyper::Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        if !self.body.is_empty() {
            request.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
        }
        request
    }
}

/// Sends one request and reads the whole body; returns the body size.
async fn send(client: &HttpClient, target: &Target) -> Result<u64, String> {
    let response = client
        .request(target.request())
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let mut body = response.into_body();
    let mut size = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Some(data) = frame.data_ref() {
            size += data.len() as u64;
        }
    }
    if status != hyper::StatusCode::OK {
        return Err(format!("status {status}"));
    }
    Ok(size)
}

#[derive(Default)]
struct Measured {
    requests: u64,
    errors: u64,
    bytes: u64,
    seconds: f64,
    latencies_us: Vec<u64>,
    /// CPU seconds the server side (gradio, the proxy, or both) spent meanwhile.
    server_cpu: f64,
}

impl Measured {
    fn add(&mut self, other: Measured) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.bytes += other.bytes;
        self.seconds += other.seconds;
        self.latencies_us.extend(other.latencies_us);
        self.server_cpu += other.server_cpu;
    }

    /// Server CPU milliseconds per request: independent of how busy the machine is.
    fn cpu_ms_per_request(&self) -> f64 {
        self.server_cpu * 1000.0 / self.requests as f64
    }

    fn per_second(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let index = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        self.latencies_us[index] as f64 / 1000.0
    }
}

/// `concurrency` workers send `target` back to back for `duration`.
async fn load(
    client: &HttpClient,
    target: &Target,
    concurrency: usize,
    duration: Duration,
) -> Measured {
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let target = target.clone();
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let (mut errors, mut bytes) = (0u64, 0u64);
            while Instant::now() < deadline {
                let begun = Instant::now();
                match send(&client, &target).await {
                    Ok(size) => {
                        latencies.push(begun.elapsed().as_micros() as u64);
                        bytes += size;
                    }
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors, bytes)
        });
    }
    let mut measured = Measured::default();
    while let Some(result) = workers.join_next().await {
        let (latencies, errors, bytes) = result.expect("worker");
        measured.requests += latencies.len() as u64;
        measured.latencies_us.extend(latencies);
        measured.errors += errors;
        measured.bytes += bytes;
    }
    measured.seconds = start.elapsed().as_secs_f64();
    measured
}

/// [`load`], noting the CPU time the processes `pids` used meanwhile.
async fn measured_load(
    client: &HttpClient,
    target: &Target,
    pids: &[u32],
    concurrency: usize,
    duration: Duration,
) -> Measured {
    let cpu = || pids.iter().filter_map(|&pid| cpu_seconds(pid)).sum::<f64>();
    let before = cpu();
    let mut measured = load(client, target, concurrency, duration).await;
    measured.server_cpu = cpu() - before;
    measured
}

/// Measures `a` and `b` in alternating rounds (a b, b a, a b, ...) that add up to `duration`
/// each, so that load from elsewhere on the machine hits both sides alike.
async fn compare(
    a: (&Target, &[u32]),
    b: (&Target, &[u32]),
    concurrency: usize,
    duration: Duration,
) -> (Measured, Measured) {
    let ((a, a_pids), (b, b_pids)) = (a, b);
    const ROUNDS: u32 = 6;
    let client = http_client();
    for target in [a, b] {
        let warm_until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < warm_until {
            let _ = send(&client, target).await;
        }
    }
    let (mut first, mut second) = (Measured::default(), Measured::default());
    for round in 0..ROUNDS {
        let slice = duration / ROUNDS;
        if round % 2 == 0 {
            first.add(measured_load(&client, a, a_pids, concurrency, slice).await);
            second.add(measured_load(&client, b, b_pids, concurrency, slice).await);
        } else {
            second.add(measured_load(&client, b, b_pids, concurrency, slice).await);
            first.add(measured_load(&client, a, a_pids, concurrency, slice).await);
        }
    }
    first.latencies_us.sort_unstable();
    second.latencies_us.sort_unstable();
    (first, second)
}

fn report(title: &str, direct_label: &str, direct: &Measured, proxy: &Measured) {
    println!("\n{title}");
    println!(
        "  {:<26} {:>9} {:>9} {:>9} {:>14} {:>7}",
        "", "req/s", "p50 ms", "p99 ms", "server CPU ms/req", "errors"
    );
    for (label, m) in [(direct_label, direct), ("through the proxy", proxy)] {
        println!(
            "  {:<26} {:>9.1} {:>9.3} {:>9.3} {:>14.3} {:>7}",
            label,
            m.per_second(),
            m.percentile_ms(0.5),
            m.percentile_ms(0.99),
            m.cpu_ms_per_request(),
            m.errors
        );
    }
    println!(
        "  ratio proxy/direct: req/s {:.2}x, p50 {:.2}x, p99 {:.2}x; added p50 {:+.3} ms, p99 {:+.3} ms",
        proxy.per_second() / direct.per_second(),
        proxy.percentile_ms(0.5) / direct.percentile_ms(0.5),
        proxy.percentile_ms(0.99) / direct.percentile_ms(0.99),
        proxy.percentile_ms(0.5) - direct.percentile_ms(0.5),
        proxy.percentile_ms(0.99) - direct.percentile_ms(0.99),
    );
}

/// The 1-minute load average (Linux), to judge how busy the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "n/a".to_owned())
}

fn start_gradio(test: &str) -> Option<harness::Gradio> {
    let python = harness::python_or_skip(test)?;
    Some(harness::Gradio::start(
        &python,
        &harness::GradioOptions::default(),
    ))
}

fn seconds(var: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with benches/proxy.sh"]
async fn bench() {
    let Some(gradio) = start_gradio("bench") else {
        return;
    };
    let proxy = ProxyProcess::start(&gradio);
    let duration = seconds("PROXY_BENCH_SECONDS", 10);
    println!(
        "proxy benchmark: gradio 3.41.2 at {}, proxy at {} (own process), {} s per side \
         in 6 alternating rounds, {} CPUs, load average {}",
        gradio.addr,
        proxy.addr,
        duration.as_secs(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        load_average()
    );

    let parts = std::env::var("PROXY_BENCH_PARTS").unwrap_or_else(|_| "latency,api,files".into());
    let wanted = |part: &str| parts.split(',').any(|p| p.trim() == part);
    let mut errors = 0;

    let direct_api = Target::echo(gradio.addr);
    let proxied_api = Target::echo(proxy.addr);
    let gradio_pid = [gradio.pid()];
    let both_pids = [gradio.pid(), proxy.child.id()];
    let proxy_pid = [proxy.child.id()];
    if wanted("latency") {
        let (direct, through) = compare(
            (&direct_api, &gradio_pid),
            (&proxied_api, &both_pids),
            1,
            duration,
        )
        .await;
        report(
            "(a) POST /api/echo, 1 client (latency)",
            "direct to gradio",
            &direct,
            &through,
        );
        errors += direct.errors + through.errors;
    }
    if wanted("api") {
        let (direct, through) = compare(
            (&direct_api, &gradio_pid),
            (&proxied_api, &both_pids),
            16,
            duration,
        )
        .await;
        report(
            "(a) POST /api/echo, 16 concurrent clients (throughput)",
            "direct to gradio",
            &direct,
            &through,
        );
        errors += direct.errors + through.errors;
    }
    if !wanted("files") {
        assert_eq!(errors, 0, "errors during the benchmark");
        return;
    }

    let size = std::fs::metadata(&gradio.files.big)
        .expect("big file")
        .len();
    let from_gradio = Target::file(gradio.addr, &gradio.files.plain_big);
    let from_proxy = Target::file(proxy.addr, &gradio.files.big);
    let (direct, through) = compare(
        (&from_gradio, &gradio_pid),
        (&from_proxy, &proxy_pid),
        16,
        duration,
    )
    .await;
    report(
        &format!("(b) GET /file= of a {size}-byte PNG, 16 concurrent clients"),
        "gradio (dot-free copy)",
        &direct,
        &through,
    );
    println!(
        "  throughput: gradio {:.1} MB/s, proxy {:.1} MB/s; proxy serves {:.1}x gradio's \
         requests/s, at {:.1}x less server CPU per request",
        direct.bytes as f64 / direct.seconds / 1e6,
        through.bytes as f64 / through.seconds / 1e6,
        through.per_second() / direct.per_second(),
        direct.cpu_ms_per_request() / through.cpu_ms_per_request()
    );
    errors += direct.errors + through.errors;
    assert_eq!(errors, 0, "errors during the benchmark");
}

/// One queued `gen` event over the proxy's websocket, then both gallery images; any failure
/// is an error string.
async fn queue_and_fetch(
    proxy: SocketAddr,
    fn_index: u64,
    client: &HttpClient,
) -> Result<(), String> {
    let url = format!("ws://{proxy}/queue/join");
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| e.to_string())?;
    let session = format!("soak{}", rand_suffix());
    let names = loop {
        let message = socket
            .next()
            .await
            .ok_or("socket closed")?
            .map_err(|e| e.to_string())?;
        let Message::Text(text) = message else {
            continue;
        };
        let value: serde_json::Value =
            serde_json::from_str(text.as_str()).map_err(|e| e.to_string())?;
        match value["msg"].as_str().unwrap_or("") {
            "send_hash" => {
                let hello = serde_json::json!({"fn_index": fn_index, "session_hash": session});
                socket
                    .send(Message::text(hello.to_string()))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            "send_data" => {
                let data = serde_json::json!({
                    "data": [], "fn_index": fn_index, "session_hash": session, "event_data": null
                });
                socket
                    .send(Message::text(data.to_string()))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            "process_completed" => {
                if value["success"] != true {
                    return Err(format!("event failed: {value}"));
                }
                break harness::gallery_names(&value["output"]);
            }
            _ => {}
        }
    };
    let _ = socket.close(None).await;
    for name in names {
        let target = Target {
            method: hyper::Method::GET,
            uri: format!("http://{proxy}/file={name}")
                .parse()
                .map_err(|e: hyper::http::uri::InvalidUri| e.to_string())?,
            body: Bytes::new(),
        };
        send(client, &target).await?;
    }
    Ok(())
}

fn rand_suffix() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run with benches/proxy.sh"]
async fn soak() {
    let Some(gradio) = start_gradio("soak") else {
        return;
    };
    let proxy = ProxyProcess::start(&gradio);
    let duration = seconds("PROXY_SOAK_SECONDS", 60);
    let clients = 50;
    let fn_index = harness::fn_index(&format!("http://{}", proxy.addr), "gen", None).await;
    let rss_start = proxy.rss_kib();
    let cpu_start = proxy.cpu_seconds();
    println!(
        "soak: {clients} clients for {} s through the proxy at {}; proxy RSS at start {:?} KiB",
        duration.as_secs(),
        proxy.addr,
        rss_start
    );

    let client = http_client();
    let api = Target::echo(proxy.addr);
    let small = Target::file(proxy.addr, &gradio.files.image);
    let big = Target::file(proxy.addr, &gradio.files.big);
    let script = Target::file(proxy.addr, &gradio.files.script);
    let counts: Arc<[AtomicU64; 5]> = Arc::new(Default::default());
    let errors = Arc::new(AtomicU64::new(0));
    let first_errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = tokio::task::JoinSet::new();
    for id in 0..clients {
        let (client, counts, errors, first_errors) = (
            client.clone(),
            Arc::clone(&counts),
            Arc::clone(&errors),
            Arc::clone(&first_errors),
        );
        let (api, small, big, script) = (api.clone(), small.clone(), big.clone(), script.clone());
        let proxy_addr = proxy.addr;
        workers.spawn(async move {
            let mut round = 0usize;
            while Instant::now() < deadline {
                let kind = (id + round) % 5;
                round += 1;
                let outcome = tokio::time::timeout(Duration::from_secs(30), async {
                    match kind {
                        0 => send(&client, &api).await.map(|_| ()),
                        1 => send(&client, &small).await.map(|_| ()),
                        2 => send(&client, &big).await.map(|_| ()),
                        3 => send(&client, &script).await.map(|_| ()),
                        _ => queue_and_fetch(proxy_addr, fn_index, &client).await,
                    }
                })
                .await
                .unwrap_or_else(|_| Err("timed out".to_owned()));
                match outcome {
                    Ok(()) => {
                        counts[kind].fetch_add(1, Ordering::Relaxed);
                    }
                    Err(err) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut first) = first_errors.lock()
                            && first.len() < 10
                        {
                            first.push(format!("kind {kind}: {err}"));
                        }
                    }
                }
            }
        });
    }
    let mut samples = Vec::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(10).min(deadline - Instant::now())).await;
        let rss = proxy.rss_kib();
        samples.push((start.elapsed().as_secs(), rss));
        println!(
            "  t={:>3}s proxy RSS {:?} KiB",
            start.elapsed().as_secs(),
            rss
        );
    }
    while workers.join_next().await.is_some() {}
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_end = proxy.rss_kib();
    let cpu_used = proxy
        .cpu_seconds()
        .zip(cpu_start)
        .map(|(end, start)| end - start);
    let names = [
        "api",
        "small file",
        "1 MB file",
        "extension js",
        "websocket queue+2 files",
    ];
    let total: u64 = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    println!("soak finished after {:.1} s", start.elapsed().as_secs_f64());
    for (name, count) in names.iter().zip(counts.iter()) {
        println!("  {name:<26} {:>8} ok", count.load(Ordering::Relaxed));
    }
    let errors = errors.load(Ordering::Relaxed);
    println!("  total {total} operations, {errors} errors");
    println!(
        "  proxy RSS: start {:?} KiB, after 10 s {:?} KiB, end (idle 2 s later) {:?} KiB; proxy CPU {:.1} s",
        rss_start,
        samples.first().and_then(|s| s.1),
        rss_end,
        cpu_used.unwrap_or(f64::NAN)
    );
    for error in first_errors.lock().map(|e| e.clone()).unwrap_or_default() {
        println!("  error: {error}");
    }
    assert_eq!(errors, 0, "errors during the soak");
}
