//! With gradio's login on (`--gradio-auth`), the proxy serves a dot-directory file only to a
//! client holding a session gradio accepts; everyone else gets gradio's own answer. Against a
//! real gradio 3.41.2; skipped unless `SD_WEBUI_TEST_PYTHON` is set.

#[path = "support/gradio_harness.rs"]
mod harness;

use harness::{Gradio, GradioOptions, RunningProxy, client, file_url, read};
use stable_diffusion_webui::proxy::BackendState;

/// Logs in through `base` and returns the `Cookie` header value gradio's session needs.
async fn login(base: &str, user: &str, password: &str) -> Option<String> {
    let response = client()
        .post(format!("{base}/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("username={user}&password={password}"))
        .send()
        .await
        .expect("POST /login");
    if response.status() != 200 {
        return None;
    }
    let cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::to_owned)
        .collect();
    let unsecure = cookies
        .iter()
        .find(|c| c.starts_with("access-token-unsecure="))
        .expect("gradio sets access-token-unsecure");
    Some(unsecure.clone())
}

#[tokio::test]
async fn files_need_a_session_gradio_accepts() {
    let Some(python) = harness::python_or_skip("files_need_a_session_gradio_accepts") else {
        return;
    };
    let options = GradioOptions {
        auth: Some("user:secret-pass".to_owned()),
        ..GradioOptions::default()
    };
    let gradio = Gradio::start(&python, &options);
    let mut config = harness::config(gradio.addr);
    config.gradio_auth = true;
    let proxy = RunningProxy::start(
        config,
        BackendState::Ready {
            file_roots: gradio.file_roots(),
            working_dir: None,
            root_view: None,
        },
    )
    .await;
    let direct = format!("http://{}", gradio.addr);
    let client = client();
    let image = file_url(&gradio.files.image);
    let missing = format!("{}/outputs/missing.png", gradio.files.data.display());

    // No session: exactly what gradio answers, for a real and for a missing file alike (no
    // hint about which files exist).
    let gradio_says = client.get(format!("{direct}{image}")).send().await.unwrap();
    let gradio_status = gradio_says.status();
    let gradio_body = gradio_says.bytes().await.unwrap();
    assert_eq!(gradio_status, 401);
    for target in [image.clone(), format!("/file={missing}")] {
        let response = client.get(proxy.url(&target)).send().await.unwrap();
        assert_eq!(response.status(), gradio_status, "{target}");
        assert_eq!(response.bytes().await.unwrap(), gradio_body, "{target}");
    }
    let forged = client
        .get(proxy.url(&image))
        .header(
            "Cookie",
            "access-token=forged; access-token-unsecure=forged",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    assert!(login(&proxy.url(""), "user", "wrong").await.is_none());

    // Logged in (through the proxy): the file is served; gradio itself still refuses it.
    let cookie = login(&proxy.url(""), "user", "secret-pass")
        .await
        .expect("login succeeds");
    let served = client
        .get(proxy.url(&image))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(
        served.bytes().await.unwrap().to_vec(),
        read(&gradio.files.image)
    );
    let refused = client
        .get(format!("{direct}{image}"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let not_found = client
        .get(proxy.url(&format!("/file={missing}")))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(not_found.status(), 404);

    // The queue works with the session too.
    let index = harness::fn_index(&proxy.url(""), "gen", Some(&cookie)).await;
    let ws = format!("ws://{}/queue/join", proxy.addr);
    let output = harness::queue_round_trip(&ws, index, Some(&cookie)).await;
    assert_eq!(harness::gallery_names(&output).len(), 2);

    // A restart forgets sessions: after Stopping → Ready the answer is asked for again.
    proxy.state.send_replace(BackendState::Stopping);
    proxy.state.send_replace(BackendState::Ready {
        file_roots: gradio.file_roots(),
        working_dir: None,
        root_view: None,
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let again = client
        .get(proxy.url(&image))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    proxy.stop().await.expect("stop");
}
