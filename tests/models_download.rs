//! The model downloader and `models` commands against a loopback server that serves ranges,
//! drops connections, stalls, trickles, answers 404/416/503, and changes the object between
//! attempts. Byte counts on the server side prove what a resume did (not) fetch again.

#[path = "support/prereq.rs"]
mod prereq;
#[path = "models/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use server::{Object, TestServer, data};
use sha2::{Digest, Sha256};
use stable_diffusion_webui::models::catalog::Catalog;
use stable_diffusion_webui::models::download::{
    DownloadError, Downloader, Job, Options, Reporter, Source, hex,
};
use stable_diffusion_webui::models::plan::Overrides;
use stable_diffusion_webui::models::reference::{Endpoints, Tokens};
use stable_diffusion_webui::models::{Check, Models, ModelsError, Pulled, State};

const MIB: usize = 1 << 20;

fn sha(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn options() -> Options {
    Options {
        retries: 3,
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        read_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(5),
        check_free_space: true,
    }
}

/// A downloader that never uses a proxy (the test server is on loopback).
fn downloader(options: Options) -> Downloader {
    let client = reqwest::Client::builder()
        .no_proxy()
        .read_timeout(options.read_timeout)
        .connect_timeout(options.connect_timeout)
        .build()
        .unwrap();
    Downloader::with_client(client, options)
}

fn job(server: &TestServer, name: &str, target: &Path, bytes: &[u8]) -> Job {
    Job {
        label: name.to_owned(),
        sources: vec![Source::new(server.url(name))],
        target: target.to_owned(),
        sha256: Some(sha(bytes)),
        size: Some(bytes.len() as u64),
    }
}

fn part(target: &Path) -> PathBuf {
    PathBuf::from(format!("{}.part", target.display()))
}

fn part_meta(target: &Path) -> PathBuf {
    PathBuf::from(format!("{}.part.json", target.display()))
}

/// Records what the downloader reports.
#[derive(Default)]
struct Recorder {
    notices: Mutex<Vec<String>>,
    progress: Mutex<u64>,
    starts: Mutex<Vec<(Option<u64>, u64)>>,
    finished: Mutex<usize>,
}

impl Reporter for Recorder {
    fn on_start(&self, _id: usize, _label: &str, total: Option<u64>, done: u64) {
        self.starts.lock().unwrap().push((total, done));
    }
    fn on_progress(&self, _id: usize, bytes: u64) {
        *self.progress.lock().unwrap() += bytes;
    }
    fn on_notice(&self, _id: usize, message: &str) {
        self.notices.lock().unwrap().push(message.to_owned());
    }
    fn on_finish(&self, _id: usize) {
        *self.finished.lock().unwrap() += 1;
    }
}

impl Recorder {
    fn notices(&self) -> Vec<String> {
        self.notices.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_is_verified_then_renamed_into_place() {
    let server = TestServer::start();
    let bytes = data(3 * MIB + 17, 1);
    server.put("m.safetensors", Object::new(bytes.clone(), "v1"));
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("models/VAE/m.safetensors");
    let recorder = Recorder::default();
    let outcome = downloader(options())
        .fetch(
            &job(&server, "m.safetensors", &target, &bytes),
            0,
            &recorder,
        )
        .await
        .unwrap();
    assert!(outcome.verified);
    assert_eq!(outcome.sha256, sha(&bytes));
    assert_eq!(
        (outcome.reused, outcome.transferred),
        (0, bytes.len() as u64)
    );
    assert_eq!(std::fs::read(&target).unwrap(), bytes);
    assert!(
        !part(&target).exists() && !part_meta(&target).exists(),
        "no leftovers"
    );
    assert_eq!(server.served(), bytes.len() as u64);
    assert_eq!(*recorder.progress.lock().unwrap(), bytes.len() as u64);
    assert_eq!(*recorder.finished.lock().unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_resumes_with_range_and_does_not_fetch_the_prefix_again() {
    let server = TestServer::start();
    let bytes = data(4 * MIB, 2);
    let cut = (MIB + 12345) as u64;
    server.put("m.bin", Object::new(bytes.clone(), "v1"));
    server.script().drop_after.push_back(cut);
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("m.bin");
    let recorder = Recorder::default();
    let outcome = downloader(options())
        .fetch(&job(&server, "m.bin", &target, &bytes), 0, &recorder)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), bytes);
    let log = server.log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0].range, None);
    assert_eq!(
        log[1].range.as_deref(),
        Some(format!("bytes={cut}-").as_str())
    );
    assert_eq!(
        log[1].if_range.as_deref(),
        Some("\"v1\""),
        "resumes only the same object"
    );
    assert_eq!(log[1].status, 206);
    assert_eq!(
        server.served(),
        bytes.len() as u64,
        "every byte was served exactly once"
    );
    assert_eq!(outcome.transferred, bytes.len() as u64);
    let notices = recorder.notices();
    assert!(
        notices.iter().any(|n| n.contains("retrying in")),
        "{notices:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_leaves_only_a_part_file_and_the_next_run_resumes_it() {
    let server = TestServer::start();
    let bytes = data(2 * MIB, 3);
    let cut = 700_000u64;
    server.put("m.ckpt", Object::new(bytes.clone(), "v1"));
    server.script().drop_after.push_back(cut);
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("m.ckpt");
    let job = job(&server, "m.ckpt", &target, &bytes);
    let no_retries = Options {
        retries: 0,
        ..options()
    };
    let error = downloader(no_retries)
        .fetch(&job, 0, &Recorder::default())
        .await
        .unwrap_err();
    let url = server.url("m.ckpt");
    assert!(
        error.to_string() == format!("Gave up on `{url}` after 1 attempt"),
        "{error}"
    );
    assert!(!target.exists(), "nothing loadable after an interruption");
    assert_eq!(std::fs::metadata(part(&target)).unwrap().len(), cut);
    assert!(part_meta(&target).exists());

    let outcome = downloader(options())
        .fetch(&job, 0, &Recorder::default())
        .await
        .unwrap();
    assert_eq!(
        outcome.reused, cut,
        "the prefix on disk was kept and re-hashed"
    );
    assert_eq!(outcome.transferred, bytes.len() as u64 - cut);
    assert_eq!(server.served(), bytes.len() as u64);
    assert_eq!(std::fs::read(&target).unwrap(), bytes);
    assert!(!part(&target).exists() && !part_meta(&target).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_says_so_and_the_next_url_is_tried() {
    let server = TestServer::start();
    let bytes = data(100_000, 4);
    server.put("there.bin", Object::new(bytes.clone(), "v1"));
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("x.bin");
    let mut job = job(&server, "missing.bin", &target, &bytes);
    let error = downloader(options())
        .fetch(&job, 0, &Recorder::default())
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("`{}` was not found (HTTP 404)", server.url("missing.bin"))
    );
    assert!(!part(&target).exists(), "no empty .part left behind");
    assert_eq!(server.log().len(), 1, "a 404 is not retried");

    job.sources.push(Source::new(server.url("there.bin")));
    let recorder = Recorder::default();
    downloader(options())
        .fetch(&job, 0, &recorder)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), bytes);
    assert!(
        recorder.notices()[0].ends_with("was not found (HTTP 404); trying the next URL"),
        "{:?}",
        recorder.notices()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_416_for_a_complete_part_finishes_without_downloading() {
    let server = TestServer::start();
    let bytes = data(300_000, 5);
    server.put("m.pth", Object::new(bytes.clone(), "v1"));
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("m.pth");
    // A previous run received everything but stopped before verifying.
    std::fs::write(part(&target), &bytes).unwrap();
    std::fs::write(
        part_meta(&target),
        format!(
            r#"{{"url":"{}","etag":"\"v1\"","last_modified":null,"total":{},"sha256":"{}"}}"#,
            server.url("m.pth"),
            bytes.len(),
            sha(&bytes)
        ),
    )
    .unwrap();
    let outcome = downloader(options())
        .fetch(
            &job(&server, "m.pth", &target, &bytes),
            0,
            &Recorder::default(),
        )
        .await
        .unwrap();
    let log = server.log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, 416);
    assert_eq!(server.served(), 0);
    assert_eq!(
        (outcome.reused, outcome.transferred),
        (bytes.len() as u64, 0)
    );
    assert_eq!(std::fs::read(&target).unwrap(), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_416_for_a_part_longer_than_the_object_starts_over() {
    let server = TestServer::start();
    let bytes = data(200_000, 6);
    server.put("m.pth", Object::new(bytes.clone(), "v2"));
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("m.pth");
    std::fs::write(part(&target), data(250_000, 7)).unwrap();
    std::fs::write(
        part_meta(&target),
        format!(
            r#"{{"url":"{}","etag":null,"last_modified":null,"total":null,"sha256":null}}"#,
            server.url("m.pth")
        ),
    )
    .unwrap();
    let recorder = Recorder::default();
    downloader(options())
        .fetch(&job(&server, "m.pth", &target, &bytes), 0, &recorder)
        .await
        .unwrap();
    let statuses: Vec<u16> = server.log().iter().map(|l| l.status).collect();
    assert_eq!(statuses, vec![416, 200]);
    assert_eq!(server.served(), bytes.len() as u64);
    assert_eq!(std::fs::read(&target).unwrap(), bytes);
    assert!(
        recorder.notices().iter().any(|n| n.starts_with(&format!(
            "`{}` no longer serves the object the partial download came from; starting over",
            server.url("m.pth")
        ))),
        "{:?}",
        recorder.notices()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_hash_leaves_nothing_and_names_the_file_and_both_hashes() {
    let server = TestServer::start();
    let bytes = data(500_000, 8);
    server.put("m.safetensors", Object::new(bytes.clone(), "v1"));
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("m.safetensors");
    let mut job = job(&server, "m.safetensors", &target, &bytes);
    let wrong = "00".repeat(32);
    job.sha256 = Some(wrong.clone());
    let error = downloader(options())
        .fetch(&job, 0, &Recorder::default())
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "sha256 mismatch for `{}`: expected {wrong}, got {}; the download was discarded",
            target.display(),
            sha(&bytes)
        )
    );
    assert!(matches!(error, DownloadError::HashMismatch { .. }));
    assert!(!target.exists() && !part(&target).exists() && !part_meta(&target).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_changed_between_attempts_is_downloaded_again_not_spliced() {
    let server = TestServer::start();
    let old = data(MIB, 9);
    let new = data(MIB, 10);
    let cut = 400_000u64;
    server.put("m.bin", Object::new(old, "v1"));
    {
        let mut script = server.script();
        script.drop_after.push_back(cut);
        script.replace_after_request = Some(("m.bin".into(), Object::new(new.clone(), "v2")));
    }
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("m.bin");
    let recorder = Recorder::default();
    downloader(options())
        .fetch(&job(&server, "m.bin", &target, &new), 0, &recorder)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), new);
    let log = server.log();
    assert_eq!(log[1].if_range.as_deref(), Some("\"v1\""));
    assert_eq!(
        log[1].status, 200,
        "If-Range failed, so the server sent the new object whole"
    );
    assert_eq!(server.served(), cut + new.len() as u64);
    assert!(
        recorder.notices().iter().any(|n| n
            .contains("sent the whole file again (it changed, or ignores Range); starting over")),
        "{:?}",
        recorder.notices()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_ignoring_if_range_is_caught_by_its_etag() {
    let server = TestServer::start();
    let old = data(MIB, 11);
    let new = data(MIB, 12);
    let cut = 300_000u64;
    server.put("m.bin", Object::new(old, "v1"));
    {
        let mut script = server.script();
        script.drop_after.push_back(cut);
        script.ignore_if_range = true;
        script.replace_after_request = Some(("m.bin".into(), Object::new(new.clone(), "v2")));
    }
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("m.bin");
    downloader(options())
        .fetch(
            &job(&server, "m.bin", &target, &new),
            0,
            &Recorder::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(&target).unwrap(),
        new,
        "no bytes of v1 survive"
    );
    let statuses: Vec<u16> = server.log().iter().map(|l| l.status).collect();
    assert_eq!(
        statuses,
        vec![200, 206, 200],
        "206 from another object is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_steady_server_is_waited_for() {
    let server = TestServer::start();
    let bytes = data(256 * 1024, 13);
    server.put("m.bin", Object::new(bytes.clone(), "v1"));
    server.script().trickle = Some((Duration::from_millis(15), 16 * 1024));
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("m.bin");
    let recorder = Recorder::default();
    let started = std::time::Instant::now();
    downloader(options())
        .fetch(&job(&server, "m.bin", &target, &bytes), 0, &recorder)
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "it really was slow"
    );
    assert_eq!(server.log().len(), 1, "no timeout, no retry");
    assert!(recorder.notices().is_empty(), "{:?}", recorder.notices());
    assert_eq!(std::fs::read(&target).unwrap(), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_times_out_and_the_download_resumes() {
    let server = TestServer::start();
    let bytes = data(MIB, 14);
    let cut = 500_000u64;
    server.put("m.bin", Object::new(bytes.clone(), "v1"));
    server.script().stall_after.push_back(cut);
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("m.bin");
    let recorder = Recorder::default();
    let started = std::time::Instant::now();
    downloader(Options {
        read_timeout: Duration::from_millis(300),
        ..options()
    })
    .fetch(&job(&server, "m.bin", &target, &bytes), 0, &recorder)
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by the read timeout"
    );
    assert_eq!(std::fs::read(&target).unwrap(), bytes);
    let log = server.log();
    assert_eq!(
        log[1].range.as_deref(),
        Some(format!("bytes={cut}-").as_str())
    );
    assert_eq!(server.served(), bytes.len() as u64);
    let url = server.url("m.bin");
    assert!(
        recorder
            .notices()
            .iter()
            .any(|n| n.starts_with(&format!("No data from `{url}` for 0.3 s; retrying in"))),
        "{:?}",
        recorder.notices()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_then_given_up_on_with_the_cause() {
    let server = TestServer::start();
    let bytes = data(1000, 15);
    server.put("m.bin", Object::new(bytes.clone(), "v1"));
    for _ in 0..10 {
        server
            .script()
            .status
            .push_back(axum::http::StatusCode::SERVICE_UNAVAILABLE);
    }
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("m.bin");
    let error = downloader(Options {
        retries: 2,
        ..options()
    })
    .fetch(
        &job(&server, "m.bin", &target, &bytes),
        0,
        &Recorder::default(),
    )
    .await
    .unwrap_err();
    let url = server.url("m.bin");
    assert_eq!(
        stable_diffusion_webui::models::download::error_chain(&error),
        format!("Gave up on `{url}` after 3 attempts: `{url}` answered HTTP 503")
    );
    assert_eq!(server.log().len(), 3);
    assert!(!target.exists() && !part(&target).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_size_other_than_expected_is_refused_and_access_errors_name_the_token() {
    let server = TestServer::start();
    let bytes = data(10_000, 16);
    server.put("m.bin", Object::new(bytes.clone(), "v1"));
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("m.bin");
    let mut wrong_size = job(&server, "m.bin", &target, &bytes);
    wrong_size.size = Some(9_999);
    let error = downloader(options())
        .fetch(&wrong_size, 0, &Recorder::default())
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "`{}` serves 10000 bytes, but 9999 were expected; not downloading it",
            server.url("m.bin")
        )
    );
    assert!(!target.exists() && !part(&target).exists());

    server
        .script()
        .status
        .push_back(axum::http::StatusCode::UNAUTHORIZED);
    let mut denied = job(&server, "m.bin", &target, &bytes);
    denied.sources[0].bearer = Some("secret".into());
    denied.sources[0].auth_hint = Some("set HF_TOKEN".into());
    let error = downloader(options())
        .fetch(&denied, 0, &Recorder::default())
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "`{}` refused access (HTTP 401); set HF_TOKEN",
            server.url("m.bin")
        )
    );
    let log = server.log();
    assert_eq!(
        log.last().unwrap().authorization.as_deref(),
        Some("Bearer secret")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_downloads_of_one_file_do_not_share_the_part_file() {
    let server = TestServer::start();
    let bytes = data(512 * 1024, 17);
    server.put("m.bin", Object::new(bytes.clone(), "v1"));
    server.script().trickle = Some((Duration::from_millis(10), 16 * 1024));
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("m.bin");
    let job = job(&server, "m.bin", &target, &bytes);
    let first = downloader(options());
    let second = downloader(options());
    let (r1, r2) = (Recorder::default(), Recorder::default());
    let (a, b) = tokio::join!(first.fetch(&job, 0, &r1), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        second.fetch(&job, 1, &r2).await
    });
    a.unwrap();
    assert_eq!(
        b.unwrap_err().to_string(),
        format!(
            "Another download is already writing `{}`",
            part(&target).display()
        )
    );
    assert_eq!(std::fs::read(&target).unwrap(), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_larger_than_the_free_space_is_refused_before_downloading() {
    let server = TestServer::start();
    server.put("huge.bin", Object::new(vec![0u8; 10], "h"));
    server.script().claim_length = Some(1 << 53);
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("huge.bin");
    let job = Job {
        label: "huge".into(),
        sources: vec![Source::new(server.url("huge.bin"))],
        target: target.clone(),
        sha256: None,
        size: None,
    };
    let error = downloader(options())
        .fetch(&job, 0, &Recorder::default())
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with(&format!(
            "Not enough free space for `{}`: 8.0 PiB more needed, ",
            target.display()
        )) && text.ends_with(" available; free some space and run the same command again"),
        "{text}"
    );
    assert!(!part(&target).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_named_as_such() {
    if !Path::new("/dev/full").exists() {
        prereq::skip("a_full_disk_is_named_as_such", "no /dev/full here");
        return;
    }
    let server = TestServer::start();
    let bytes = data(300_000, 60);
    server.put("m.bin", Object::new(bytes.clone(), "v1"));
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("m.bin");
    // Every write to the `.part` fails with ENOSPC, as on a full file system.
    std::os::unix::fs::symlink("/dev/full", part(&target)).unwrap();
    let error = downloader(Options {
        check_free_space: false,
        ..options()
    })
    .fetch(
        &job(&server, "m.bin", &target, &bytes),
        0,
        &Recorder::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, DownloadError::DiskFull { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "No space left on the device for `{}` (0 B of 293.0 KiB downloaded); the partial download was kept: free some space and run the same command again to resume",
            part(&target).display()
        )
    );
    assert!(!target.exists());
}

fn models(server: &TestServer, data_dir: &Path) -> Models {
    Models {
        data_dir: data_dir.to_owned(),
        catalog: Catalog::embedded().unwrap(),
        endpoints: Endpoints {
            huggingface: format!("{}/hf", server.base()),
            civitai: format!("{}/civitai", server.base()),
        },
        tokens: Tokens {
            huggingface: Some("hf_token".into()),
            civitai: None,
        },
        downloader: downloader(options()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_files_at_once_are_recorded_and_listed_as_verified() {
    let server = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let models = models(&server, tmp.path());
    let mut plans = Vec::new();
    let mut contents = Vec::new();
    for i in 0..4u64 {
        let bytes = data(300_000 + i as usize, 20 + i);
        let name = format!("f{i}.safetensors");
        server.put(&name, Object::new(bytes.clone(), &format!("e{i}")));
        let overrides = Overrides {
            sha256: Some(sha(&bytes)),
            folder: Some("Lora".into()),
            file_name: None,
        };
        plans.push(models.plan(&server.url(&name), &overrides).await.unwrap());
        contents.push((name, bytes));
    }
    server.script().trickle = Some((Duration::from_millis(5), 32 * 1024));
    let results = models.pull(&plans, 4, &Recorder::default()).await;
    for result in &results {
        assert!(
            matches!(result, Ok(Pulled::Downloaded(o)) if o.verified),
            "{result:?}"
        );
    }
    for (name, bytes) in &contents {
        assert_eq!(
            &std::fs::read(tmp.path().join("models/Lora").join(name)).unwrap(),
            bytes
        );
    }
    let rows = models.list();
    let lora: Vec<_> = rows
        .iter()
        .filter(|r| r.relative.starts_with("Lora/"))
        .collect();
    assert_eq!(lora.len(), 4);
    for row in lora {
        assert!(
            matches!(
                row.state,
                State::Installed {
                    check: Check::Verified,
                    ..
                }
            ),
            "{row:?}"
        );
    }
    // Pulling again is a cheap check, not a download.
    let served = server.served();
    let again = models.pull(&plans, 2, &Recorder::default()).await;
    assert!(
        again
            .iter()
            .all(|r| matches!(r, Ok(Pulled::Present { verified: true, .. })))
    );
    assert_eq!(server.served(), served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hf_references_follow_the_endpoint_send_the_token_and_use_the_hub_hash() {
    let server = TestServer::start();
    let bytes = data(123_456, 30);
    // The mock "Hub" resolves files through the same /files route.
    server.put("w.safetensors", Object::new(bytes.clone(), "lfs"));
    let tmp = tempfile::tempdir().unwrap();
    let mut models = models(&server, tmp.path());
    models.endpoints.huggingface = format!("{}/json/hub", server.base());
    server.put_json(
        "hub/api/models/org/repo/tree/main/sub",
        &format!(
            r#"[{{"type":"file","path":"sub/w.safetensors","size":{n},"lfs":{{"oid":"{h}","size":{n}}}}}]"#,
            n = bytes.len(),
            h = sha(&bytes)
        ),
    );
    let overrides = Overrides {
        folder: Some("VAE".into()),
        ..Overrides::default()
    };
    let plan = models
        .plan("hf:org/repo/sub/w.safetensors", &overrides)
        .await
        .unwrap();
    assert_eq!(
        plan.job.sha256.as_deref(),
        Some(sha(&bytes).as_str()),
        "hash from the Hub"
    );
    assert_eq!(
        plan.job.sources[0].url,
        format!(
            "{}/json/hub/org/repo/resolve/main/sub/w.safetensors",
            server.base()
        )
    );
    assert_eq!(plan.job.sources[0].bearer.as_deref(), Some("hf_token"));
    assert_eq!(plan.relative, "VAE/w.safetensors");

    // The user's pin is authoritative: no lookup is made.
    let pinned = Overrides {
        sha256: Some("ab".repeat(32)),
        folder: Some("VAE".into()),
        file_name: None,
    };
    let plan = models
        .plan("hf:org/repo/sub/w.safetensors", &pinned)
        .await
        .unwrap();
    assert_eq!(
        plan.job.sha256.as_deref(),
        Some("ab".repeat(32).as_str()),
        "the user's pin wins without a lookup"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn civitai_references_take_name_folder_and_hash_from_the_api() {
    let server = TestServer::start();
    let bytes = data(222_222, 31);
    server.put("lora.safetensors", Object::new(bytes.clone(), "c"));
    let tmp = tempfile::tempdir().unwrap();
    let mut models = models(&server, tmp.path());
    models.endpoints.civitai = format!("{}/json/civitai", server.base());
    models.tokens.civitai = Some("cv_token".into());
    server.put_json(
        "civitai/api/v1/model-versions/4242",
        &format!(
            r#"{{"id":4242,"model":{{"name":"A lora","type":"LORA"}},"files":[
                {{"name":"other.yaml","primary":false,"hashes":{{}},"downloadUrl":"{base}/files/none"}},
                {{"name":"my_lora.safetensors","primary":true,"sizeKB":217.0,
                  "hashes":{{"AutoV2":"ABC","SHA256":"{h}"}},"downloadUrl":"{base}/files/lora.safetensors"}}]}}"#,
            base = server.base(),
            h = sha(&bytes).to_uppercase()
        ),
    );
    let plan = models
        .plan("civitai:4242", &Overrides::default())
        .await
        .unwrap();
    assert_eq!(plan.relative, "Lora/my_lora.safetensors");
    assert_eq!(plan.job.sha256.as_deref(), Some(sha(&bytes).as_str()));
    let results = models.pull(&[plan], 1, &Recorder::default()).await;
    assert!(matches!(&results[0], Ok(Pulled::Downloaded(o)) if o.verified));
    assert_eq!(
        std::fs::read(tmp.path().join("models/Lora/my_lora.safetensors")).unwrap(),
        bytes
    );

    let error = models
        .plan("civitai:99", &Overrides::default())
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "Failed to look up `civitai:99` at `{}/json/civitai/api/v1/model-versions/99`: HTTP 404",
            server.base()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_pulls_what_is_missing_and_refuses_a_file_with_another_hash() {
    let server = TestServer::start();
    let a = data(100_000, 40);
    let b = data(100_001, 41);
    server.put("a.safetensors", Object::new(a.clone(), "a"));
    server.put("b.pt", Object::new(b.clone(), "b"));
    let tmp = tempfile::tempdir().unwrap();
    let models = models(&server, tmp.path());
    let declared = tmp.path().join("declared.json");
    std::fs::write(
        &declared,
        format!(
            r#"[{{"url":"{}","sha256":"{}","folder":"Stable-diffusion"}},
               {{"url":"{}","sha256":"{}","folder":"VAE","name":"renamed.pt"}}]"#,
            server.url("a.safetensors"),
            sha(&a).to_uppercase(),
            server.url("b.pt"),
            sha(&b)
        ),
    )
    .unwrap();
    let plans = models.plan_declared(&declared).await.unwrap();
    let results = models.pull(&plans, 2, &Recorder::default()).await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(
        std::fs::read(tmp.path().join("models/VAE/renamed.pt")).unwrap(),
        b
    );
    assert_eq!(
        stable_diffusion_webui::models::first_start_hint(tmp.path()),
        None
    );

    // Somebody replaced a declared file: ensure reports it and leaves it alone.
    let replaced = tmp.path().join("models/VAE/renamed.pt");
    std::fs::write(&replaced, b"not the model").unwrap();
    let results = models.pull(&plans, 2, &Recorder::default()).await;
    let error = results[1].as_ref().unwrap_err();
    assert!(matches!(error, ModelsError::ExistsDifferent { .. }));
    assert_eq!(
        error.to_string(),
        format!(
            "`{}` already exists with sha256 {}, not the expected {}; remove it first (`models remove`)",
            replaced.display(),
            sha(b"not the model"),
            sha(&b)
        )
    );
    assert_eq!(std::fs::read(&replaced).unwrap(), b"not the model");
}

/// The binary, end to end: pull, list, verify, remove.
#[test]
fn the_models_command_pulls_lists_verifies_and_removes() {
    let server = TestServer::start();
    let bytes = data(654_321, 50);
    server.put("v.safetensors", Object::new(bytes.clone(), "v"));
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let cmd = || {
        let mut cmd = assert_cmd::Command::cargo_bin("stable-diffusion-webui").unwrap();
        for key in [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            cmd.env_remove(key);
        }
        cmd.env("NO_PROXY", "127.0.0.1")
            .env("no_proxy", "127.0.0.1")
            .env_remove("HF_TOKEN")
            .arg("models");
        cmd
    };
    let url = server.url("v.safetensors");
    let out = cmd()
        .args([
            "pull",
            &url,
            "--folder",
            "VAE",
            "--sha256",
            &sha(&bytes),
            "--data-dir",
        ])
        .arg(&data_dir)
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let target = data_dir.join("models/VAE/v.safetensors");
    assert!(
        stderr.contains(&format!(
            "{url}: verified and installed as {}",
            target.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("VAE/v.safetensors: downloading 639.0 KiB"),
        "plain lines when not a terminal: {stderr}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), bytes);

    let out = cmd()
        .args(["list", "--json", "--data-dir"])
        .arg(&data_dir)
        .assert()
        .success();
    let rows: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"] == "VAE/v.safetensors")
        .unwrap();
    assert_eq!(row["status"], "verified");
    assert_eq!(row["size"], bytes.len());
    let sd15 = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "sd15")
        .unwrap();
    assert_eq!(sd15["installed"], false);

    cmd()
        .args(["verify", "v.safetensors", "--data-dir"])
        .arg(&data_dir)
        .assert()
        .success()
        .stdout("ok        VAE/v.safetensors\n");
    std::fs::write(&target, b"tampered").unwrap();
    let out = cmd()
        .args(["verify", "--data-dir"])
        .arg(&data_dir)
        .assert()
        .code(1);
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout),
        format!(
            "MISMATCH  VAE/v.safetensors: expected sha256 {}, got {}\n",
            sha(&bytes),
            sha(b"tampered")
        )
    );

    cmd()
        .args(["remove", "VAE/v.safetensors", "--data-dir"])
        .arg(&data_dir)
        .write_stdin("")
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "Not removing `VAE/v.safetensors` without confirmation: pass --yes",
        ));
    assert!(target.exists());
    cmd()
        .args(["remove", "VAE/v.safetensors", "--yes", "--data-dir"])
        .arg(&data_dir)
        .assert()
        .success();
    assert!(!target.exists());

    let out = cmd()
        .args(["pull", "not-a-model", "--data-dir"])
        .arg(&data_dir)
        .assert()
        .code(2);
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stderr),
        "error: Unknown model `not-a-model`; `models list` shows the catalog\n"
    );
}

/// `HTTP_PROXY` is honoured: the request for an unreachable host reaches the proxy (the
/// test server, which routes by path).
#[test]
fn the_proxy_from_the_environment_is_used() {
    let server = TestServer::start();
    let bytes = data(50_000, 70);
    server.put("p.pt", Object::new(bytes.clone(), "p"));
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = assert_cmd::Command::cargo_bin("stable-diffusion-webui").unwrap();
    for key in [
        "NO_PROXY",
        "no_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(key);
    }
    cmd.env("HTTP_PROXY", server.base())
        .env("http_proxy", server.base())
        .args(["models", "pull", "http://models.example.invalid/files/p.pt"])
        .args(["--folder", "ESRGAN", "--sha256", &sha(&bytes), "--data-dir"])
        .arg(tmp.path())
        .assert()
        .success();
    assert_eq!(
        std::fs::read(tmp.path().join("models/ESRGAN/p.pt")).unwrap(),
        bytes
    );
    assert_eq!(server.log()[0].path, "p.pt");
}

/// Issue #8: upstream's first-use downloads (`load_file_from_url`, through the shim) are
/// checked against the catalog by URL, and keep upstream's contract otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_use_downloads_are_verified_by_catalog_url_and_keep_upstreams_contract() {
    use stable_diffusion_webui::models::first_use::{Context, Fetched, Request, fetch};
    let server = TestServer::start();
    let good = data(200_000, 90);
    server.put("up.pth", Object::new(good.clone(), "u"));
    server.put("evil.pth", Object::new(data(200_000, 91), "e"));
    let catalog = Catalog::parse(&format!(
        r#"{{"version":1,"models":[
          {{"name":"up","title":"t","folder":"ESRGAN","file":"up.pth","urls":["{}"],"sha256":"{h}","sha256_source":"s","size":null,"license":"l"}},
          {{"name":"evil","title":"t","folder":"ESRGAN","file":"evil.pth","urls":["{}"],"sha256":"{h}","sha256_source":"s","size":null,"license":"l"}}]}}"#,
        server.url("up.pth"),
        server.url("evil.pth"),
        h = sha(&good)
    ))
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("models/ESRGAN");
    let (endpoints, tokens, downloader) = (
        Endpoints::default(),
        Tokens::default(),
        downloader(options()),
    );
    let context = Context {
        catalog: &catalog,
        endpoints: &endpoints,
        tokens: &tokens,
        downloader: &downloader,
        data_dir: Some(tmp.path()),
    };
    let request = |name: &str| Request {
        url: server.url(name),
        dir: dir.clone(),
        ..Request::default()
    };

    // Catalogued, wrong bytes: an error naming both hashes, nothing where the webui looks.
    let error = fetch(&context, &request("evil.pth"), &Recorder::default())
        .await
        .unwrap_err();
    assert!(
        error.to_string().starts_with(&format!(
            "sha256 mismatch for `{}`: expected {}, got ",
            dir.join("evil.pth").display(),
            sha(&good)
        )),
        "{error}"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing left");

    // Catalogued, right bytes: verified, in place, recorded as the catalog entry.
    let fetched = fetch(&context, &request("up.pth"), &Recorder::default())
        .await
        .unwrap();
    let Fetched::Downloaded { outcome, catalog } = &fetched else {
        panic!("{fetched:?}");
    };
    assert!(outcome.verified);
    assert_eq!(catalog.as_deref(), Some("up"));
    assert_eq!(std::fs::read(dir.join("up.pth")).unwrap(), good);
    let models = models(&server, tmp.path());
    let listed = models
        .list()
        .into_iter()
        .find(|r| r.relative == "ESRGAN/up.pth")
        .unwrap();
    assert!(
        matches!(
            listed.state,
            State::Installed {
                check: Check::Verified,
                ..
            }
        ),
        "{listed:?}"
    );

    // Present: returned as it is, the server is not asked.
    let requests = server.log().len();
    let fetched = fetch(&context, &request("up.pth"), &Recorder::default())
        .await
        .unwrap();
    assert_eq!(fetched, Fetched::Present(dir.join("up.pth")));
    assert_eq!(server.log().len(), requests);

    // Not catalogued, a short hash prefix that does not match: refused after the download,
    // before the file is moved into place.
    server.put("other.pth", Object::new(data(1000, 92), "o"));
    let mut other = request("other.pth");
    other.hash_prefix = Some("0000".into());
    let error = fetch(&context, &other, &Recorder::default())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("expected 0000..."), "{error}");
    assert!(!dir.join("other.pth").exists() && !dir.join("other.pth.download").exists());

    // re_download replaces the file only with verified bytes; a failure keeps the old one.
    let mut again = request("evil.pth");
    again.file_name = Some("up.pth".into());
    again.replace = true;
    assert!(fetch(&context, &again, &Recorder::default()).await.is_err());
    assert_eq!(std::fs::read(dir.join("up.pth")).unwrap(), good);
}

/// Issue #8: store-backed models (`nix/models.nix`) are symlinked into the data dir, never
/// copied, trusted without hashing because Nix checked them; a user's file is never replaced.
#[test]
fn store_models_are_linked_not_copied_and_never_replace_a_users_file() {
    use stable_diffusion_webui::models::Linked;
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let bytes = data(10_000, 95);
    let v1 = store.join("0123456789abcdefghijklmnopqrstuv-m.safetensors");
    let v2 = store.join("vutsrqponmlkjihgfedcba9876543210-m.safetensors");
    std::fs::write(&v1, &bytes).unwrap();
    std::fs::write(&v2, &bytes).unwrap();
    let outside = tmp.path().join("outside.safetensors");
    std::fs::write(&outside, &bytes).unwrap();
    let data_dir = tmp.path().join("data");
    let server = TestServer::start();
    let models = models(&server, &data_dir);
    let declared = tmp.path().join("declared.json");
    let declare = |entries: serde_json::Value| {
        std::fs::write(&declared, entries.to_string()).unwrap();
    };
    let hash = sha(&bytes);

    declare(serde_json::json!([{"path": v1, "folder": "Stable-diffusion", "sha256": hash}]));
    let results = models.link_declared(&declared, &store).unwrap();
    let link = data_dir.join("models/Stable-diffusion/m.safetensors");
    assert_eq!(
        results[0].as_ref().unwrap(),
        &Linked::Created {
            link: link.clone(),
            store_path: v1.clone()
        }
    );
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        v1,
        "a symlink, not a copy"
    );
    let row = models
        .list()
        .into_iter()
        .find(|r| r.relative == "Stable-diffusion/m.safetensors")
        .unwrap();
    assert!(
        matches!(
            row.state,
            State::Installed {
                check: Check::Verified,
                ..
            }
        ),
        "{row:?}"
    );
    assert_eq!(
        stable_diffusion_webui::models::first_start_hint(&data_dir),
        None
    );
    // Again: nothing to do. A new store path (flake update): our link moves to it.
    assert!(matches!(
        models.link_declared(&declared, &store).unwrap()[0],
        Ok(Linked::Present { .. })
    ));
    declare(
        serde_json::json!([{"path": v2, "folder": "Stable-diffusion", "name": "m.safetensors", "sha256": hash}]),
    );
    assert!(matches!(
        models.link_declared(&declared, &store).unwrap()[0],
        Ok(Linked::Updated { .. })
    ));
    assert_eq!(std::fs::read_link(&link).unwrap(), v2);
    // Without a sha256 (the NixOS module's own `{ path, folder }` entries): linked, and no
    // hash is recorded that nobody gave (like a file placed by hand, until `models verify`).
    declare(
        serde_json::json!([{"path": v1, "folder": "Stable-diffusion", "name": "m.safetensors"}]),
    );
    assert!(matches!(
        models.link_declared(&declared, &store).unwrap()[0],
        Ok(Linked::Updated { .. })
    ));
    assert_eq!(std::fs::read_link(&link).unwrap(), v1);
    assert!(
        !models
            .list()
            .iter()
            .any(|r| r.relative == "Stable-diffusion/m.safetensors"),
        "the earlier record (with v2's hash) is gone"
    );

    // A user's own file in that place is left alone, and said so; so is a link of theirs
    // to a file outside the store.
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let error = models
        .link_declared(&declared, &store)
        .unwrap()
        .remove(0)
        .unwrap_err();
    assert!(matches!(error, ModelsError::Occupied { .. }), "{error}");
    assert_eq!(std::fs::read_link(&link).unwrap(), outside);
    std::fs::remove_file(&link).unwrap();
    std::fs::write(&link, b"mine").unwrap();
    let error = models
        .link_declared(&declared, &store)
        .unwrap()
        .remove(0)
        .unwrap_err();
    assert!(matches!(error, ModelsError::Occupied { .. }), "{error}");
    assert_eq!(std::fs::read(&link).unwrap(), b"mine");

    // Not in the store: not trusted.
    declare(serde_json::json!([{"path": outside, "folder": "VAE", "sha256": hash}]));
    let error = models
        .link_declared(&declared, &store)
        .unwrap()
        .remove(0)
        .unwrap_err();
    assert!(matches!(error, ModelsError::NotInStore { .. }), "{error}");
    assert!(!data_dir.join("models/VAE/outside.safetensors").exists());

    // Through the command, as the NixOS module runs it: NIX_STORE_DIR names the store.
    std::fs::remove_file(&link).unwrap();
    declare(serde_json::json!([{"path": v1, "folder": "Stable-diffusion", "sha256": hash}]));
    let out = assert_cmd::Command::cargo_bin("stable-diffusion-webui")
        .unwrap()
        .env("NIX_STORE_DIR", &store)
        .args(["models", "ensure", "--from"])
        .arg(&declared)
        .arg("--data-dir")
        .arg(&data_dir)
        .assert()
        .success();
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stderr),
        format!("{}: linked to {}\n", link.display(), v1.display())
    );
    assert_eq!(std::fs::read_link(&link).unwrap(), v1);
}
