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
    plain_http_gets_no_http_answer(proxy.addr).await;
    proxy.stop().await.expect("stop");
}

/// Plain HTTP on the TLS port: the handshake fails on its first bytes, so the reply is one
/// fatal TLS alert record (content type 21, level 2), then the connection closes; never an
/// HTTP response. (A client error alone proves nothing: a refused connection is one too.)
async fn plain_http_gets_no_http_answer(addr: std::net::SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the TLS port accepts connections");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("send a plain HTTP request");
    let mut reply = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut reply),
    )
    .await
    .expect("the proxy closes the connection at once, not after a timeout");
    // A reset after the alert is as good as a close.
    if let Err(e) = read {
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }
    const TLS_ALERT: u8 = 21;
    const FATAL: u8 = 2;
    assert!(
        reply.len() == 7 && reply[0] == TLS_ALERT && reply[5] == FATAL,
        "plain HTTP on the TLS port got {reply:?} ({:?}), not a fatal TLS alert",
        String::from_utf8_lossy(&reply)
    );
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
