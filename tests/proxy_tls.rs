//! TLS termination at the proxy (`--tls-certfile`/`--tls-keyfile`), with a stub backend: HTTP/1.1
//! and HTTP/2 over TLS, `X-Forwarded-Proto: https`, and clear errors for unusable files.

#[path = "support/gradio_harness.rs"]
mod harness;
#[path = "support/gradio_stub.rs"]
mod stub;

use harness::RunningProxy;
use serde_json::Value;
use stable_diffusion_webui::proxy::{self, BackendState, ProxyError, TlsError, TlsFiles};

struct Cert {
    _dir: tempfile::TempDir,
    files: TlsFiles,
    pem: String,
}

fn self_signed() -> Cert {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let dir = tempfile::tempdir().expect("temp dir");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let pem = certified.cert.pem();
    std::fs::write(&cert, &pem).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    Cert {
        _dir: dir,
        files: TlsFiles { cert, key },
        pem,
    }
}

fn https_client(cert: &Cert, addr: std::net::SocketAddr, http2: bool) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(cert.pem.as_bytes()).unwrap();
    let builder = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(root)
        .resolve("localhost", addr);
    let builder = if http2 { builder } else { builder.http1_only() };
    builder.build().unwrap()
}

#[tokio::test]
async fn https_is_terminated_at_the_proxy() {
    let stub = stub::Stub::start().await;
    let cert = self_signed();
    let mut config = harness::config(stub.addr);
    config.tls = Some(cert.files.clone());
    let proxy = RunningProxy::start(
        config,
        BackendState::Ready {
            file_roots: vec![],
            working_dir: None,
            root_view: None,
        },
    )
    .await;
    let url = format!("https://localhost:{}/secure?q=1", proxy.addr.port());
    for http2 in [false, true] {
        let response = https_client(&cert, proxy.addr, http2)
            .get(&url)
            .header("Cookie", "a=1")
            .send()
            .await
            .expect("https request");
        assert_eq!(response.status(), 200);
        let expected = if http2 {
            reqwest::Version::HTTP_2
        } else {
            reqwest::Version::HTTP_11
        };
        assert_eq!(response.version(), expected, "ALPN");
        let echo: Value = response.json().await.unwrap();
        assert_eq!(echo["path"], "/secure?q=1");
        assert_eq!(echo["headers"]["x-forwarded-proto"][0], "https");
        let host = format!("localhost:{}", proxy.addr.port());
        assert_eq!(
            echo["headers"]["host"][0],
            host.as_str(),
            "Host from :authority"
        );
        assert_eq!(echo["headers"]["cookie"][0], "a=1");
    }
    // Plain HTTP on the TLS port gets no answer.
    let plain = harness::client()
        .get(format!("http://{}/", proxy.addr))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    proxy.stop().await.expect("stop");
}

#[tokio::test]
async fn unusable_tls_files_fail_at_bind() {
    let cert = self_signed();
    let backend = ([127, 0, 0, 1], 9).into();
    let mut config = harness::config(backend);

    config.tls = Some(TlsFiles {
        cert: cert.files.cert.with_file_name("missing.pem"),
        key: cert.files.key.clone(),
    });
    let err = proxy::bind(config.clone()).await.unwrap_err();
    assert!(
        matches!(err, ProxyError::Tls(TlsError::ReadCertificate { .. })),
        "{err:?}"
    );

    config.tls = Some(TlsFiles {
        cert: cert.files.key.clone(),
        key: cert.files.key.clone(),
    });
    let err = proxy::bind(config.clone()).await.unwrap_err();
    assert!(
        matches!(err, ProxyError::Tls(TlsError::NoCertificate { .. })),
        "{err:?}"
    );

    config.tls = Some(TlsFiles {
        cert: cert.files.cert.clone(),
        key: cert.files.cert.clone(),
    });
    let err = proxy::bind(config.clone()).await.unwrap_err();
    assert!(
        matches!(err, ProxyError::Tls(TlsError::ReadKey { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("cert.pem"), "{err}");

    let other = self_signed();
    config.tls = Some(TlsFiles {
        cert: cert.files.cert.clone(),
        key: other.files.key.clone(),
    });
    let err = proxy::bind(config).await.unwrap_err();
    assert!(
        matches!(err, ProxyError::Tls(TlsError::Config { .. })),
        "{err:?}"
    );
}
