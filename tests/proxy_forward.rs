//! Pass-through behaviour against a stub backend (no Python needed): headers per RFC 9110,
//! streaming in both directions, server-sent events, compression, websockets, the 503 while
//! gradio is unavailable, the subpath, listening and shutdown.

#[path = "support/gradio_harness.rs"]
mod harness;
#[path = "support/gradio_stub.rs"]
mod stub;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use harness::RunningProxy;
use serde_json::Value;
use stable_diffusion_webui::proxy::{self, BackendState, ProxyError};
use tokio_tungstenite::tungstenite::Message;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

async fn ready(stub: &stub::Stub) -> RunningProxy {
    RunningProxy::ready(stub.addr, Vec::new()).await
}

#[tokio::test]
async fn hop_by_hop_headers_are_dropped_and_forwarding_headers_set() {
    let stub = stub::Stub::start().await;
    let proxy = ready(&stub).await;
    let response = client()
        .get(proxy.url("/echo?x=1"))
        .header("Connection", "x-private, keep-alive")
        .header("X-Private", "hop")
        .header("Keep-Alive", "timeout=5")
        .header("Proxy-Authorization", "Basic Zm9vOmJhcg==")
        .header("TE", "trailers")
        .header("X-Forwarded-For", "203.0.113.9")
        .header("X-Forwarded-Host", "evil.example")
        .header("X-Custom", "end-to-end")
        .header("Cookie", "a=1")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert!(
        headers.get("x-hop-resp").is_none(),
        "Connection-listed response header leaked"
    );
    assert!(headers.get("keep-alive").is_none());
    assert_eq!(headers.get("x-end").unwrap(), "1");
    assert!(
        headers
            .get("via")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("stable-diffusion-webui"),
        "Via on the response"
    );
    let echo: Value = response.json().await.expect("json");
    let seen = &echo["headers"];
    assert_eq!(echo["path"], "/echo?x=1");
    for gone in ["x-private", "keep-alive", "proxy-authorization", "te"] {
        assert!(seen.get(gone).is_none(), "{gone} reached the backend");
    }
    assert_eq!(seen["x-custom"][0], "end-to-end");
    assert_eq!(seen["cookie"][0], "a=1");
    assert_eq!(seen["x-forwarded-for"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(seen["x-forwarded-proto"], serde_json::json!(["http"]));
    let host = proxy.addr.to_string();
    assert_eq!(seen["host"], serde_json::json!([host]), "Host preserved");
    assert_eq!(seen["x-forwarded-host"], serde_json::json!([host]));
    assert!(
        seen["via"][0]
            .as_str()
            .unwrap()
            .ends_with("stable-diffusion-webui")
    );
    proxy.stop().await.expect("stop");
}

#[tokio::test]
async fn every_method_passes_through_with_its_body() {
    let stub = stub::Stub::start().await;
    let proxy = ready(&stub).await;
    let client = client();
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = client
            .request(method.clone(), proxy.url("/anything"))
            .body("twelve bytes")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{method}");
        let echo: Value = response.json().await.unwrap();
        assert_eq!(echo["method"], method.as_str());
        assert_eq!(echo["body_len"], 12);
    }
    let head = client.head(proxy.url("/anything")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(stub.seen().last().unwrap().method, "HEAD");
    proxy.stop().await.expect("stop");
}

#[tokio::test]
async fn cookies_split_over_fields_are_joined() {
    let stub = stub::Stub::start().await;
    let proxy = ready(&stub).await;
    let response = harness::raw_request(
        proxy.addr,
        "GET",
        "/c",
        &[("Cookie", "a=1"), ("Cookie", "b=2")],
    )
    .await;
    let echo: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(echo["headers"]["cookie"], serde_json::json!(["a=1; b=2"]));
    proxy.stop().await.expect("stop");
}

/// The backend sees the first chunk of an upload while the client still holds the rest back:
/// the proxy does not collect request bodies.
#[tokio::test]
async fn uploads_are_streamed_not_buffered() {
    let stub = stub::Stub::start().await;
    let proxy = ready(&stub).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, std::io::Error>(chunk), rx))
    });
    let body = reqwest::Body::wrap_stream(chunks);
    let request = tokio::spawn(client().post(proxy.url("/stream-upload")).body(body).send());
    tx.send(vec![b'a'; 64 * 1024]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), stub.state.first_chunk.notified())
        .await
        .expect("backend got the first chunk before the upload finished");
    for _ in 0..255 {
        tx.send(vec![b'b'; 64 * 1024]).await.unwrap();
    }
    drop(tx);
    let response = request.await.unwrap().expect("upload");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        (256 * 64 * 1024).to_string()
    );
    proxy.stop().await.expect("stop");
}

/// The first event arrives while the backend is still holding the second back.
#[tokio::test]
async fn server_sent_events_arrive_as_they_are_sent() {
    let stub = stub::Stub::start().await;
    let proxy = ready(&stub).await;
    let response = client().get(proxy.url("/sse")).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("first event before the stream ends")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"data: one\n\n");
    stub.state.release.notify_one();
    let second = stream.next().await.unwrap().unwrap();
    assert_eq!(&second[..], b"data: two\n\n");
    assert!(stream.next().await.is_none());
    proxy.stop().await.expect("stop");
}

#[tokio::test]
async fn compression_passes_through_untouched() {
    let stub = stub::Stub::start().await;
    let proxy = ready(&stub).await;
    let response = client()
        .get(proxy.url("/gzip"))
        .header("Accept-Encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert_eq!(response.headers()["x-seen-accept-encoding"], "gzip, br");
    assert_eq!(&response.bytes().await.unwrap()[..], stub::GZIP_BODY);
    proxy.stop().await.expect("stop");
}

async fn ws_echo(url: &str) {
    let (mut socket, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connect");
    assert_eq!(response.status(), 101);
    for text in ["hello", "again"] {
        socket.send(Message::text(text)).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("reply")
            .unwrap()
            .unwrap();
        assert_eq!(reply.into_text().unwrap().as_str(), format!("echo: {text}"));
    }
    socket
        .send(Message::binary(vec![7u8; 300_000]))
        .await
        .unwrap();
    let reply = socket.next().await.unwrap().unwrap();
    assert_eq!(reply.into_data().len(), 300_000);
    socket.close(None).await.unwrap();
}

#[tokio::test]
async fn websockets_are_tunnelled() {
    let stub = stub::Stub::start().await;
    let proxy = ready(&stub).await;
    ws_echo(&format!("ws://{}/ws", proxy.addr)).await;
    let seen = stub.seen();
    let handshake = seen.iter().find(|s| s.path_and_query == "/ws").unwrap();
    let has = |name: &str| handshake.headers.iter().any(|(n, _)| n == name);
    assert!(has("sec-websocket-key") && has("upgrade") && has("x-forwarded-for"));
    proxy.stop().await.expect("stop");
}

#[tokio::test]
async fn shutdown_closes_websocket_tunnels_and_the_port() {
    let stub = stub::Stub::start().await;
    let proxy = ready(&stub).await;
    let addr = proxy.addr;
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    socket.send(Message::text("x")).await.unwrap();
    socket.next().await.unwrap().unwrap();
    proxy.stop().await.expect("serve returns Ok");
    let end = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("tunnel closed at shutdown");
    assert!(!matches!(end, Some(Ok(Message::Text(_)))));
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "port still open"
    );
}

#[tokio::test]
async fn unavailable_backend_gets_a_self_refreshing_503() {
    let stub = stub::Stub::start().await;
    let proxy = RunningProxy::start(harness::config(stub.addr), BackendState::Starting).await;
    let client = client();
    let page = client
        .get(proxy.url("/"))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 503);
    assert_eq!(page.headers()["retry-after"], "2");
    assert_eq!(page.headers()["cache-control"], "no-store");
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("http-equiv=\"refresh\"")
    );
    for (path, accept) in [
        ("/config", "application/json"),
        ("/sdapi/v1/txt2img", "*/*"),
    ] {
        let api = client
            .get(proxy.url(path))
            .header("Accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(api.status(), 503);
        assert_eq!(api.headers()["content-type"], "application/json");
        let body: Value = api.json().await.unwrap();
        assert!(body["detail"].as_str().unwrap().contains("starting"));
    }
    let file = client
        .get(proxy.url("/file=/etc/passwd"))
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), 503);
    assert!(
        stub.seen().is_empty(),
        "nothing may reach gradio before Ready"
    );

    proxy.state.send_replace(BackendState::Ready {
        file_roots: vec![],
        working_dir: None,
        root_view: None,
    });
    let mut status = 0;
    for _ in 0..50 {
        status = client
            .get(proxy.url("/x"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200, "forwarding once Ready");

    proxy.state.send_replace(BackendState::Stopping);
    let mut body = String::new();
    for _ in 0..50 {
        let response = client.get(proxy.url("/x")).send().await.unwrap();
        if response.status() == 503 {
            body = response.text().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(body.contains("restarting"), "503 while stopping: {body}");
    proxy.stop().await.expect("stop");
}

#[tokio::test]
async fn a_backend_that_refuses_connections_gives_503_not_a_connection_error() {
    let dead: SocketAddr = ([127, 0, 0, 1], harness::free_port()).into();
    let proxy = RunningProxy::ready(dead, vec![]).await;
    let response = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let ws = tokio_tungstenite::connect_async(format!("ws://{}/queue/join", proxy.addr)).await;
    match ws {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("expected a 503 handshake answer, got {other:?}"),
    }
    proxy.stop().await.expect("stop");
}

#[tokio::test]
async fn subpath_prefix_is_stripped_and_enforced() {
    let stub = stub::Stub::start().await;
    let mut config = harness::config(stub.addr);
    config.subpath = Some("sd".parse().unwrap());
    let proxy = RunningProxy::start(
        config,
        BackendState::Ready {
            file_roots: vec![],
            working_dir: None,
            root_view: None,
        },
    )
    .await;
    let client = client();
    let echo: Value = client
        .get(proxy.url("/sd/config?a=b"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["path"], "/config?a=b");
    let root = client.get(proxy.url("/sd/")).send().await.unwrap();
    assert_eq!(root.status(), 200);
    let bare = client.get(proxy.url("/sd?x=1")).send().await.unwrap();
    assert_eq!(bare.status(), 308);
    assert_eq!(bare.headers()["location"], "/sd/?x=1");
    let top = client.get(proxy.url("/")).send().await.unwrap();
    assert_eq!(top.status(), 307);
    assert_eq!(top.headers()["location"], "/sd/");
    for outside in ["/config", "/sdx/config", "/file=/etc/passwd"] {
        let response = client.get(proxy.url(outside)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{outside}");
    }
    ws_echo(&format!("ws://{}/sd/ws", proxy.addr)).await;
    assert!(
        stub.seen()
            .iter()
            .all(|s| !s.path_and_query.starts_with("/sd"))
    );
    proxy.stop().await.expect("stop");
}

#[tokio::test]
async fn a_port_in_use_fails_at_bind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = harness::config(([127, 0, 0, 1], 1).into());
    config.listen = vec![taken.local_addr().unwrap()];
    match proxy::bind(config).await {
        Err(ProxyError::Bind { addr, .. }) => assert_eq!(addr, taken.local_addr().unwrap()),
        other => panic!("expected a bind error, got {other:?}"),
    }
    let mut empty = harness::config(([127, 0, 0, 1], 1).into());
    empty.listen.clear();
    assert!(matches!(
        proxy::bind(empty).await,
        Err(ProxyError::NoListenAddress)
    ));
}

#[tokio::test]
async fn listens_on_ipv4_and_ipv6_together() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        harness::prereq::skip(
            "listens_on_ipv4_and_ipv6_together",
            "no IPv6 loopback here (`[::1]:0` cannot be bound)",
        );
        return;
    }
    let stub = stub::Stub::start().await;
    let port = harness::free_port();
    let mut config = harness::config(stub.addr);
    // Loopback only: tests never listen beyond this machine.
    config.listen = vec![
        SocketAddr::from(([127, 0, 0, 1], port)),
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
    ];
    let proxy = RunningProxy::start(
        config,
        BackendState::Ready {
            file_roots: vec![],
            working_dir: None,
            root_view: None,
        },
    )
    .await;
    assert_eq!(proxy.addrs.len(), 2);
    for url in [
        format!("http://127.0.0.1:{port}/v4"),
        format!("http://[::1]:{port}/v6"),
    ] {
        let response = client().get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
    }
    let v6 = stub
        .seen()
        .into_iter()
        .find(|s| s.path_and_query == "/v6")
        .unwrap();
    let xff = v6
        .headers
        .iter()
        .find(|(n, _)| n == "x-forwarded-for")
        .unwrap();
    assert_eq!(xff.1, "::1");
    proxy.stop().await.expect("stop");
}
