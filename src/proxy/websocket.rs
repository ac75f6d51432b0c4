//! Websocket pass-through (gradio 3.41's queue runs over `GET /queue/join`).
//!
//! The handshake is forwarded to gradio first and the client gets gradio's own answer: a `101`
//! with gradio's `Sec-WebSocket-Accept`, or whatever refusal gradio gives (a 403 for a bad
//! origin, a 401 without a session). Only after both sides switched protocols are the two
//! upgraded connections joined byte for byte. The proxy does not re-frame messages, so
//! subprotocols and extensions (permessage-deflate) are whatever client and gradio agree on,
//! and a message is never buffered whole.
//!
//! Tunnels outlive the HTTP connection they came from, so they watch the proxy's stop signal
//! themselves and are closed at shutdown.

use axum::body::Body;
use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use super::forward::{self, Backend, Origin};

/// True for a websocket opening handshake (RFC 6455 §4.1) the proxy should tunnel.
///
/// Other upgrades (`h2c`) are not passed on: the request goes through as plain HTTP.
pub fn is_websocket_upgrade<B>(request: &Request<B>) -> bool {
    request.method() == Method::GET
        && request.version() == Version::HTTP_11
        && has_token(request.headers(), header::CONNECTION, "upgrade")
        && has_token(request.headers(), header::UPGRADE, "websocket")
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// Performs the handshake with gradio and, on `101`, joins the two connections.
pub async fn tunnel(
    backend: &Backend,
    mut request: Request<Incoming>,
    path_and_query: &str,
    origin: Origin,
    stop: watch::Receiver<bool>,
) -> Response<Body> {
    let client_side = hyper::upgrade::on(&mut request);
    let (parts, _body) = request.into_parts();
    let outbound = match forward::outbound_request(backend, &parts, path_and_query, origin, true) {
        Ok(outbound) => outbound.map(|()| Body::empty()),
        Err(_) => return forward::bad_target(),
    };
    let mut response = match backend.send(outbound).await {
        Ok(response) => response,
        Err(err) => return forward::backend_error(&err, &parts.headers, path_and_query),
    };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return forward::inbound_response(response, false);
    }
    let backend_side = hyper::upgrade::on(&mut response);
    tokio::spawn(join(client_side, backend_side, stop));
    forward::inbound_response(response, true)
}

async fn join(client: OnUpgrade, backend: OnUpgrade, mut stop: watch::Receiver<bool>) {
    let (client, backend) = match tokio::try_join!(client, backend) {
        Ok(pair) => pair,
        Err(err) => {
            tracing::debug!(error = %err, "websocket upgrade did not complete");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut backend = TokioIo::new(backend);
    tokio::select! {
        result = tokio::io::copy_bidirectional(&mut client, &mut backend) => {
            match result {
                Ok((up, down)) => tracing::trace!(up, down, "websocket closed"),
                Err(err) => tracing::debug!(error = %err, "websocket tunnel ended"),
            }
        }
        _ = stop.wait_for(|stopped| *stopped) => {
            tracing::debug!("closing websocket tunnel for shutdown");
        }
    }
}
