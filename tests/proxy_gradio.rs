//! The proxy in front of a real gradio 3.41.2 (`tests/support/gradio_app.py`), whose data dir
//! lives under `.local/share`: what gradio refuses directly, the proxy serves; everything else
//! still goes through gradio. Skipped (with a message) unless `SD_WEBUI_TEST_PYTHON` is set.

#[path = "support/gradio_harness.rs"]
mod harness;
#[path = "support/gradio_hostile.rs"]
mod hostile;

use std::sync::OnceLock;

use harness::{Gradio, GradioOptions, RunningProxy, client, file_url, read};
use hostile::{Expect, SECRET};

/// One gradio for every test of this binary (it takes seconds to start); each test runs its
/// own proxy in its own runtime.
fn gradio(test: &str) -> Option<&'static Gradio> {
    static GRADIO: OnceLock<Gradio> = OnceLock::new();
    let python = harness::python_or_skip(test)?;
    Some(GRADIO.get_or_init(|| {
        let gradio = Gradio::start(&python, &GradioOptions::default());
        hostile::plant(&gradio.files.data, &gradio.home.join("outside"));
        gradio
    }))
}

async fn proxy_for(gradio: &Gradio) -> RunningProxy {
    RunningProxy::ready(gradio.addr, gradio.file_roots()).await
}

#[tokio::test]
async fn dot_dir_files_come_through_the_proxy_but_gradio_refuses_them() {
    let Some(gradio) = gradio("dot_dir_files_come_through_the_proxy_but_gradio_refuses_them")
    else {
        return;
    };
    let proxy = proxy_for(gradio).await;
    let direct = format!("http://{}", gradio.addr);
    let client = client();

    // The gallery names are what the webui hands the browser: `<abs path>?<mtime>`.
    let output: serde_json::Value = client
        .post(proxy.url("/api/gen"))
        .json(&serde_json::json!({"data": []}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names = harness::gallery_names(&output);
    assert_eq!(names.len(), 2);
    let expected = [&gradio.files.image, &gradio.files.big];
    for (name, path) in names.iter().zip(expected) {
        assert!(name.starts_with(&path.display().to_string()), "{name}");
        assert!(
            name.contains("/.local/share/"),
            "{name} is under a dot-directory"
        );
        assert!(name.contains('?'), "{name} carries the mtime cache-buster");
        let through = client
            .get(proxy.url(&format!("/file={name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(through.status(), 200, "{name} through the proxy");
        assert_eq!(through.headers()["content-type"], "image/png");
        assert_eq!(through.bytes().await.unwrap().to_vec(), read(path));
        let refused = client
            .get(format!("{direct}/file={name}"))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "{name} directly from gradio");
    }

    let script = format!("{}?1700000000.0", file_url(&gradio.files.script));
    let through = client.get(proxy.url(&script)).send().await.unwrap();
    assert_eq!(through.status(), 200);
    assert_eq!(through.headers()["content-type"], "text/javascript");
    assert_eq!(
        through.bytes().await.unwrap().to_vec(),
        read(&gradio.files.script)
    );
    let refused = client
        .get(format!("{direct}{script}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    // Outside the roots the proxy stands aside: gradio serves (or refuses) as before.
    let plain = client
        .get(proxy.url(&file_url(&gradio.files.plain_image)))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);
    assert_eq!(plain.headers()["server"], "uvicorn", "answered by gradio");
    let passwd = client
        .get(proxy.url("/file=/etc/passwd"))
        .send()
        .await
        .unwrap();
    assert_eq!(passwd.status(), 403);
    assert_eq!(passwd.headers()["server"], "uvicorn");
    proxy.stop().await.expect("stop");
}

#[tokio::test]
async fn a_queued_event_round_trips_over_the_websocket() {
    let Some(gradio) = gradio("a_queued_event_round_trips_over_the_websocket") else {
        return;
    };
    let proxy = proxy_for(gradio).await;
    let index = harness::fn_index(&proxy.url(""), "gen", None).await;
    let ws = format!("ws://{}/queue/join", proxy.addr);
    let output = harness::queue_round_trip(&ws, index, None).await;
    let names = harness::gallery_names(&output);
    assert_eq!(names.len(), 2);
    for name in names {
        let response = client()
            .get(proxy.url(&format!("/file={name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{name}");
    }
    proxy.stop().await.expect("stop");
}

#[tokio::test]
async fn served_files_support_range_head_and_conditional_requests() {
    let Some(gradio) = gradio("served_files_support_range_head_and_conditional_requests") else {
        return;
    };
    let proxy = proxy_for(gradio).await;
    let client = client();
    let url = proxy.url(&format!("{}?123.5", file_url(&gradio.files.big)));
    let bytes = read(&gradio.files.big);

    let full = client.get(&url).send().await.unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    assert_eq!(
        full.headers()["content-length"],
        bytes.len().to_string().as_str()
    );
    let etag = full.headers()["etag"].clone();
    let modified = full.headers()["last-modified"].clone();
    assert_eq!(full.bytes().await.unwrap().len(), bytes.len());

    let part = client
        .get(&url)
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 100-199/{}", bytes.len()).as_str()
    );
    assert_eq!(
        part.bytes().await.unwrap().to_vec(),
        bytes[100..200].to_vec()
    );

    let tail = client
        .get(&url)
        .header("Range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(
        tail.bytes().await.unwrap().to_vec(),
        bytes[bytes.len() - 10..].to_vec()
    );

    let beyond = client
        .get(&url)
        .header("Range", format!("bytes={}-", bytes.len() + 10))
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 416);

    let head = client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        bytes.len().to_string().as_str()
    );
    assert_eq!(head.headers()["content-type"], "image/png");
    assert!(head.bytes().await.unwrap().is_empty());

    let cached = client
        .get(&url)
        .header("If-None-Match", etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);
    let cached = client
        .get(&url)
        .header("If-Modified-Since", modified)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);
    let changed = client
        .get(&url)
        .header("If-None-Match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    proxy.stop().await.expect("stop");
}

#[tokio::test]
async fn hostile_table_is_refused_end_to_end() {
    let Some(gradio) = gradio("hostile_table_is_refused_end_to_end") else {
        return;
    };
    let proxy = proxy_for(gradio).await;
    let outside = gradio.home.join("outside");
    let mut failures = Vec::new();
    let table = hostile::table(&gradio.files.data, &outside);
    for entry in &table {
        let response = harness::raw_get(proxy.addr, &entry.target).await;
        let status_ok = match entry.expect {
            Expect::Forbidden => response.status == 403,
            Expect::NotFound => response.status == 404,
            Expect::Gradio => matches!(response.status, 403 | 404),
        };
        if !status_ok || response.body_contains(SECRET) {
            failures.push(format!(
                "{} [{}]: {} {}",
                entry.target,
                entry.class,
                response.status,
                String::from_utf8_lossy(&response.body)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("{} hostile requests refused", table.len());
    proxy.stop().await.expect("stop");
}

#[tokio::test]
async fn uploads_stream_through_to_gradio() {
    let Some(gradio) = gradio("uploads_stream_through_to_gradio") else {
        return;
    };
    let proxy = proxy_for(gradio).await;
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let boundary = "proxytestboundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"up.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let response = client()
        .post(proxy.url("/upload"))
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let paths: Vec<String> = response.json().await.unwrap();
    assert_eq!(paths.len(), 1);
    let back = client()
        .get(proxy.url(&format!("/file={}", paths[0])))
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 200);
    assert_eq!(back.bytes().await.unwrap().to_vec(), content);
    proxy.stop().await.expect("stop");
}

#[tokio::test]
async fn the_ui_loads_under_a_subpath() {
    let Some(python) = harness::python_or_skip("the_ui_loads_under_a_subpath") else {
        return;
    };
    let options = GradioOptions {
        root_path: Some("/sd".to_owned()),
        ..GradioOptions::default()
    };
    let gradio = Gradio::start(&python, &options);
    let mut config = harness::config(gradio.addr);
    config.subpath = Some("sd".parse().unwrap());
    let proxy = RunningProxy::start(
        config,
        stable_diffusion_webui::proxy::BackendState::Ready {
            file_roots: gradio.file_roots(),
            working_dir: None,
            root_view: None,
        },
    )
    .await;
    let client = client();
    let page = client.get(proxy.url("/sd/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("\"root\": \"/sd\"") || html.contains("\"root\":\"/sd\""),
        "root in page"
    );
    let config: serde_json::Value = client
        .get(proxy.url("/sd/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["root"], "/sd");
    let image = client
        .get(proxy.url(&format!("/sd{}", file_url(&gradio.files.image))))
        .send()
        .await
        .unwrap();
    assert_eq!(image.status(), 200);
    assert_eq!(
        image.bytes().await.unwrap().to_vec(),
        read(&gradio.files.image)
    );
    let top = client.get(proxy.url("/")).send().await.unwrap();
    assert_eq!(top.status(), 307);
    let index = harness::fn_index(&proxy.url("/sd"), "gen", None).await;
    let output =
        harness::queue_round_trip(&format!("ws://{}/sd/queue/join", proxy.addr), index, None).await;
    assert_eq!(harness::gallery_names(&output).len(), 2);
    proxy.stop().await.expect("stop");
}
