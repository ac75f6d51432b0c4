//! HTTP pass-through to gradio: every method, bodies streamed both ways.
//!
//! Bodies are handed over as streams (`hyper::body::Incoming` wrapped, never collected), so an
//! upload or a large download is never held in memory whole, and server-sent events arrive as
//! they are produced. `Accept-Encoding` and `Content-Encoding` travel untouched: compression is
//! gradio's (the webui adds a gzip middleware) and the proxy neither adds nor undoes it.
//!
//! Headers follow RFC 9110 §7.6: hop-by-hop fields (`Connection`, the fields it names,
//! `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`, `Proxy-*`) are dropped in both
//! directions and `Via` is appended. `Host` is preserved. The proxy is the public edge, so
//! `X-Forwarded-For/Proto/Host` sent by a client cannot be trusted: they are replaced, not
//! appended to (uvicorn believes them from loopback).

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::unavailable::{self, Reason};

/// Idle pooled connections to gradio are dropped before uvicorn's own 5 s keep-alive timeout,
/// so a request is never written into a connection uvicorn is closing.
const POOL_IDLE: Duration = Duration::from_secs(4);

/// The pseudonym in `Via` (RFC 9110 §7.6.3).
const VIA_NAME: &str = "stable-diffusion-webui";

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// gradio's private address and a pooled HTTP/1.1 client for it.
#[derive(Clone, Debug)]
pub struct Backend {
    client: Client<HttpConnector, Body>,
    addr: SocketAddr,
}

impl Backend {
    /// A client for gradio at `addr` (a loopback address; plain HTTP/1.1, as uvicorn speaks).
    pub fn new(addr: SocketAddr) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(connector);
        Backend { client, addr }
    }

    /// gradio's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URI of `path_and_query` on gradio.
    pub fn uri(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme("http")
            .authority(self.addr.to_string())
            .path_and_query(path_and_query)
            .build()
    }

    /// Sends a request to gradio as is.
    pub async fn send(
        &self,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        self.client.request(request).await
    }
}

/// Where a request came from, for the forwarding headers.
#[derive(Clone, Copy, Debug)]
pub struct Origin {
    /// The client's address as the proxy's listener saw it.
    pub peer: SocketAddr,
    /// `http` or `https`: the scheme of the public listener.
    pub scheme: &'static str,
}

/// Forwards `request` to gradio's `path_and_query` and streams the answer back.
pub async fn forward(
    backend: &Backend,
    request: Request<Incoming>,
    path_and_query: &str,
    origin: Origin,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let outbound = match outbound_request(backend, &parts, path_and_query, origin, false) {
        Ok(outbound) => outbound.map(|()| Body::new(body)),
        Err(_) => return bad_target(),
    };
    match backend.send(outbound).await {
        Ok(response) => inbound_response(response, false),
        Err(err) => backend_error(&err, &parts.headers, path_and_query),
    }
}

/// The answer to a request whose target cannot be re-addressed to gradio.
pub fn bad_target() -> Response<Body> {
    plain(StatusCode::BAD_REQUEST, "Bad request target\n")
}

/// Builds the request to gradio from a client's request head (RFC 9110 §7.6).
///
/// With `upgrade`, `Connection: upgrade` and the client's `Upgrade` are kept: the websocket
/// tunnel needs gradio to see the handshake. Fails only when the target is not a valid URI.
pub fn outbound_request(
    backend: &Backend,
    parts: &Parts,
    path_and_query: &str,
    origin: Origin,
    upgrade: bool,
) -> Result<Request<()>, http::Error> {
    let uri = backend.uri(path_and_query)?;
    let mut headers = HeaderMap::with_capacity(parts.headers.len() + 4);
    let listed = connection_listed(&parts.headers);
    let mut cookies: Option<Vec<u8>> = None;
    for (name, value) in &parts.headers {
        if is_hop_by_hop(name, &listed)
            || *name == X_FORWARDED_FOR
            || *name == X_FORWARDED_PROTO
            || *name == X_FORWARDED_HOST
            || *name == X_REAL_IP
            || *name == header::FORWARDED
        {
            continue;
        }
        if *name == header::COOKIE {
            // HTTP/2 clients split cookies over several fields; starlette reads only the
            // first `Cookie` field, so join them (RFC 9113 §8.2.3).
            let joined = cookies.get_or_insert_with(Vec::new);
            if !joined.is_empty() {
                joined.extend_from_slice(b"; ");
            }
            joined.extend_from_slice(value.as_bytes());
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    if let Some(cookies) = cookies
        && let Ok(value) = HeaderValue::from_bytes(&cookies)
    {
        headers.insert(header::COOKIE, value);
    }
    let host = parts
        .headers
        .get(header::HOST)
        .cloned()
        .or_else(|| {
            let authority = parts.uri.authority()?;
            HeaderValue::from_str(authority.as_str()).ok()
        })
        .or_else(|| HeaderValue::from_str(&backend.addr().to_string()).ok());
    if let Some(host) = host {
        if !headers.contains_key(header::HOST) {
            headers.insert(header::HOST, host.clone());
        }
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    if let Ok(ip) = HeaderValue::from_str(&origin.peer.ip().to_string()) {
        headers.insert(X_FORWARDED_FOR.clone(), ip);
    }
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(origin.scheme),
    );
    append_via(&mut headers, parts.version);
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(value) = parts.headers.get(header::UPGRADE) {
            headers.insert(header::UPGRADE, value.clone());
        }
    }
    let mut outbound = Request::new(());
    *outbound.method_mut() = parts.method.clone();
    *outbound.uri_mut() = uri;
    *outbound.version_mut() = Version::HTTP_11;
    *outbound.headers_mut() = headers;
    Ok(outbound)
}

/// Turns gradio's response into the client's: hop-by-hop fields dropped (kept for a `101`,
/// which needs `Connection`/`Upgrade`), `Via` appended, body streamed.
pub fn inbound_response(response: Response<Incoming>, switching: bool) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    let listed = connection_listed(&parts.headers);
    let keep_upgrade = switching && parts.status == StatusCode::SWITCHING_PROTOCOLS;
    let names: Vec<HeaderName> = parts
        .headers
        .keys()
        .filter(|name| {
            is_hop_by_hop(name, &listed)
                && !(keep_upgrade && (*name == header::CONNECTION || *name == header::UPGRADE))
        })
        .cloned()
        .collect();
    for name in names {
        parts.headers.remove(&name);
    }
    append_via(&mut parts.headers, parts.version);
    parts.version = Version::default();
    Response::from_parts(parts, Body::new(body))
}

/// The client's answer when gradio could not be asked: a refused connection means gradio is
/// (re)starting, so the self-refreshing 503; anything else is a 502.
pub fn backend_error(
    err: &hyper_util::client::legacy::Error,
    headers: &HeaderMap,
    path: &str,
) -> Response<Body> {
    if err.is_connect() {
        tracing::debug!(error = %err, "gradio refused the connection");
        return unavailable::response(Reason::Stopping, headers, path);
    }
    tracing::warn!(error = %err, "request to gradio failed");
    plain(
        StatusCode::BAD_GATEWAY,
        "Bad gateway: gradio did not answer\n",
    )
}

/// A short plain-text response.
pub fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Field names listed in `Connection` (RFC 9110 §7.6.1): hop-by-hop by declaration.
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect()
}

fn is_hop_by_hop(name: &HeaderName, listed: &[HeaderName]) -> bool {
    *name == header::CONNECTION
        || *name == KEEP_ALIVE
        || *name == PROXY_CONNECTION
        || *name == header::TE
        || *name == header::TRAILER
        || *name == header::TRANSFER_ENCODING
        || *name == header::UPGRADE
        || *name == header::PROXY_AUTHORIZATION
        || *name == header::PROXY_AUTHENTICATE
        || listed.contains(name)
}

fn append_via(headers: &mut HeaderMap, version: Version) {
    let protocol = match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    };
    if let Ok(value) = HeaderValue::from_str(&format!("{protocol} {VIA_NAME}")) {
        headers.append(header::VIA, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_names_more_hop_by_hop_fields() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        let listed = connection_listed(&headers);
        assert!(is_hop_by_hop(&HeaderName::from_static("x-secret"), &listed));
        assert!(is_hop_by_hop(&header::TRANSFER_ENCODING, &listed));
        assert!(!is_hop_by_hop(&header::CONTENT_TYPE, &listed));
    }
}
