//! Benchmark (not a test): download a 1 GiB file over loopback with the launcher's
//! downloader (sha256 while streaming, `.part` + fsync + rename) and with `curl`, in the
//! same run, alternating, and print the throughput ratio.
//!
//! `cargo run --release --example models_download_bench [-- --size-mib N --rounds N --dir D]`
//!
//! The server keeps the file in memory, so the clients, not the server, are measured.
//! Printed: CPU seconds per client and round (load on the machine changes wall time, much
//! less CPU time), the best round of each (least disturbed by other load on the machine), and the
//! ratio ours/curl; curl is timed both as it is and followed by `sync FILE`, since ours
//! also makes the file durable before reporting success.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use stable_diffusion_webui::models::download::{Downloader, Job, Options, Reporter, Source, hex};

fn main() -> anyhow::Result<()> {
    let mut size_mib = 1024usize;
    let mut rounds = 5usize;
    let mut dir: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--size-mib" => size_mib = args.next().unwrap_or_default().parse()?,
            "--rounds" => rounds = args.next().unwrap_or_default().parse()?,
            "--dir" => dir = args.next().map(PathBuf::from),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let tmp = match &dir {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let size = size_mib << 20;
    eprintln!("generating {size_mib} MiB...");
    let bytes = Bytes::from(generate(size));
    let sha256 = hex(&Sha256::digest(&bytes));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let addr = runtime.block_on(serve(bytes.clone()))?;
    let url = format!("http://{addr}/file.bin");

    let client = reqwest::Client::builder()
        .no_proxy()
        .read_timeout(Duration::from_secs(60))
        .build()?;
    let downloader = Downloader::with_client(client, Options::default());
    let (mut ours, mut curl, mut curl_sync) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        // Alternate who goes first, so a burst of load elsewhere does not favour one side.
        let (mut t_curl, mut t_curl_sync, mut t_ours) = (None, None, None);
        for step in 0..2 {
            let (self_before, children_before) =
                (cpu(libc::RUSAGE_SELF), cpu(libc::RUSAGE_CHILDREN));
            let faults_before = usage(libc::RUSAGE_SELF).ru_minflt;
            if (step == 0) == (round % 2 == 1) {
                let (a, b) = run_curl(&url, &tmp.path().join("curl.bin"), size)?;
                (t_curl, t_curl_sync) = (Some(a), Some(b));
                eprintln!(
                    "  curl: CPU {:.2} s in curl and sync, {:.2} s in this process (the server)",
                    cpu(libc::RUSAGE_CHILDREN) - children_before,
                    cpu(libc::RUSAGE_SELF) - self_before
                );
            } else {
                t_ours = Some(run_ours(
                    &runtime,
                    &downloader,
                    &url,
                    &tmp.path().join("ours.bin"),
                    &sha256,
                    size,
                )?);
                eprintln!(
                    "  ours: CPU {:.2} s in this process (the server included), {} page faults",
                    cpu(libc::RUSAGE_SELF) - self_before,
                    usage(libc::RUSAGE_SELF).ru_minflt - faults_before
                );
            }
        }
        let (Some(t_curl), Some(t_curl_sync), Some(t_ours)) = (t_curl, t_curl_sync, t_ours) else {
            anyhow::bail!("a round did not run both clients");
        };
        eprintln!(
            "round {round}: curl {} , curl+sync {} , ours (hash+fsync+rename) {} , ratio {:.2}",
            rate(size, t_curl),
            rate(size, t_curl_sync),
            rate(size, t_ours),
            t_curl.as_secs_f64() / t_ours.as_secs_f64()
        );
        curl.push(t_curl);
        curl_sync.push(t_curl_sync);
        ours.push(t_ours);
    }
    let best = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
    let median = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    println!("file: {size_mib} MiB over loopback, {rounds} rounds (best / median)");
    println!(
        "curl:                       {} / {}",
        rate(size, best(&curl)),
        rate(size, median(&curl))
    );
    println!(
        "curl + sync FILE:           {} / {}",
        rate(size, best(&curl_sync)),
        rate(size, median(&curl_sync))
    );
    println!(
        "ours (sha256+fsync+rename): {} / {}",
        rate(size, best(&ours)),
        rate(size, median(&ours))
    );
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "ratio ours/curl: {:.2} (best) {:.2} (median)   ratio ours/(curl+sync): {:.2} (best) {:.2} (median)",
        ratio(best(&curl), best(&ours)),
        ratio(median(&curl), median(&ours)),
        ratio(best(&curl_sync), best(&ours)),
        ratio(median(&curl_sync), median(&ours)),
    );
    cleanup(tmp.path());
    Ok(())
}

/// curl into `target`, then `sync target`; returns (curl alone, curl + sync).
fn run_curl(url: &str, target: &Path, size: usize) -> anyhow::Result<(Duration, Duration)> {
    let started = Instant::now();
    let status = std::process::Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--noproxy", "*", "-o"])
        .arg(target)
        .arg(url)
        .status()?;
    anyhow::ensure!(status.success(), "curl failed: {status}");
    let alone = started.elapsed();
    let status = std::process::Command::new("sync").arg(target).status()?;
    anyhow::ensure!(status.success(), "sync failed");
    let synced = started.elapsed();
    anyhow::ensure!(std::fs::metadata(target)?.len() == size as u64);
    std::fs::remove_file(target)?;
    Ok((alone, synced))
}

/// The launcher's downloader into `target`, verified against `sha256`.
fn run_ours(
    runtime: &tokio::runtime::Runtime,
    downloader: &Downloader,
    url: &str,
    target: &Path,
    sha256: &str,
    size: usize,
) -> anyhow::Result<Duration> {
    let job = Job {
        label: "bench".into(),
        sources: vec![Source::new(url)],
        target: target.to_owned(),
        sha256: Some(sha256.to_owned()),
        size: Some(size as u64),
    };
    let arrival = LastByte {
        started: Instant::now(),
        received: std::sync::atomic::AtomicU64::new(0),
        chunks: std::sync::atomic::AtomicU64::new(0),
        at: std::sync::Mutex::new(None),
    };
    let outcome = runtime.block_on(downloader.fetch(&job, 0, &arrival))?;
    let elapsed = arrival.started.elapsed();
    anyhow::ensure!(outcome.verified && outcome.size == size as u64);
    std::fs::remove_file(target)?;
    if let Ok(Some(last)) = arrival.at.lock().map(|at| *at) {
        eprintln!(
            "  ours: last byte received after {:.2} s, verified and in place after {:.2} s ({} KiB per chunk)",
            last.as_secs_f64(),
            elapsed.as_secs_f64(),
            size as u64
                / arrival
                    .chunks
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .max(1)
                / 1024
        );
    }
    Ok(elapsed)
}

/// Notes when the last byte arrived, to split network time from hash/fsync/rename time.
struct LastByte {
    started: Instant,
    received: std::sync::atomic::AtomicU64,
    chunks: std::sync::atomic::AtomicU64,
    at: std::sync::Mutex<Option<Duration>>,
}

impl Reporter for LastByte {
    fn on_start(&self, _id: usize, _label: &str, _total: Option<u64>, done: u64) {
        self.received
            .store(done, std::sync::atomic::Ordering::SeqCst);
    }
    fn on_progress(&self, _id: usize, bytes: u64) {
        self.received
            .fetch_add(bytes, std::sync::atomic::Ordering::SeqCst);
        self.chunks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut at) = self.at.lock() {
            *at = Some(self.started.elapsed());
        }
    }
}

/// User + system CPU seconds of this process or of its waited-for children.
fn cpu(who: libc::c_int) -> f64 {
    let usage = usage(who);
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn usage(who: libc::c_int) -> libc::rusage {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; zeroed memory is a valid rusage.
    unsafe {
        libc::getrusage(who, usage.as_mut_ptr());
        usage.assume_init()
    }
}

fn rate(size: usize, time: Duration) -> String {
    format!(
        "{:7.1} MiB/s ({:.2} s)",
        size as f64 / (1 << 20) as f64 / time.as_secs_f64(),
        time.as_secs_f64()
    )
}

fn cleanup(dir: &Path) {
    for name in [
        "curl.bin",
        "ours.bin",
        "ours.bin.part",
        "ours.bin.part.json",
    ] {
        let _ = std::fs::remove_file(dir.join(name));
    }
}

/// Incompressible-looking bytes, fast (xorshift, 8 bytes per step).
fn generate(size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(size);
    out
}

async fn serve(bytes: Bytes) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/file.bin", get(file))
        .with_state(bytes);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("server: {e}");
        }
    });
    Ok(addr)
}

async fn file(State(bytes): State<Bytes>) -> Response {
    let len = bytes.len();
    let chunks = futures_util::stream::iter((0..len).step_by(1 << 20).map(move |start| {
        Ok::<_, std::io::Error>(bytes.slice(start..(start + (1 << 20)).min(len)))
    }));
    (
        StatusCode::OK,
        [
            (header::CONTENT_LENGTH, len.to_string()),
            (header::ETAG, "\"bench\"".to_owned()),
        ],
        Body::from_stream(chunks),
    )
        .into_response()
}
