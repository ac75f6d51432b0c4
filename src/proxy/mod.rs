//! The public front of the webui: a reverse proxy in front of gradio.
//!
//! The browser talks only to this proxy; gradio listens on a private loopback port. That gives
//! the launcher one place to own the network (listen addresses, IPv6, `--subpath`, TLS) and
//! fixes what gradio 3.41 gets wrong for a data directory under a dot-directory
//! (`~/.local/share`): its `/file=` route refuses every path with a hidden component, so gallery
//! previews and extension scripts fail. The proxy serves those files itself under strict rules
//! ([`files`]); every other request, websockets included, is streamed through unchanged.
//!
//! Life cycle: [`bind`] opens the public sockets at once (a busy port fails before the webui
//! starts); [`BoundProxy::serve`] answers a self-refreshing 503 until the launcher reports
//! [`BackendState::Ready`] — forwarding earlier would crash upstream — and forwards from then
//! on, until the shutdown future completes.
//!
//! One concern per file: `forward` (HTTP pass-through), `websocket` (upgrade tunnel), `files`
//! (the path resolver), `file_route` (serving what it accepts), `auth` (gradio's session
//! check), `unavailable` (the 503), `tls` (rustls), `listen` (sockets).

mod auth;
mod checked_open;
mod file_route;
pub mod files;
mod forward;
mod listen;
pub mod tls;
mod unavailable;
mod websocket;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use self::auth::Sessions;
use self::files::FileRoots;
use self::forward::{Backend, Origin};
pub use self::tls::TlsError;
use self::unavailable::Reason;
use crate::subpath::Subpath;

/// How long open connections may finish their current request after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A TLS handshake that takes longer than this is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A client that has not sent a complete request head within this time is disconnected.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepted connections waiting to be picked up by the serve loop.
const ACCEPT_QUEUE: usize = 128;

/// What the launcher decided about the network.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Public addresses, already resolved by the launcher (`--listen` gives IPv4 and IPv6).
    pub listen: Vec<SocketAddr>,
    /// gradio's private loopback address.
    pub backend: SocketAddr,
    /// `--subpath` (`sd`, validated when the command line was parsed); gradio runs with
    /// `root_path` `/sd`.
    pub subpath: Option<Subpath>,
    /// `--tls-certfile`/`--tls-keyfile`, terminated here.
    pub tls: Option<TlsFiles>,
    /// True when `--gradio-auth`/`--gradio-auth-path` is in use: files are then served only
    /// to clients with a session gradio accepts.
    pub gradio_auth: bool,
}

/// PEM files for TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// What the webui reports once it is up (its app-started callback); sent through a
/// `tokio::sync::watch` channel.
#[derive(Clone, Debug, PartialEq)]
pub enum BackendState {
    /// Before the app-started point: nothing may reach gradio yet.
    Starting,
    /// gradio takes requests; `file_roots` are the data dir and the output, temp and extension
    /// directories the webui is configured with.
    Ready {
        /// Directories the proxy may serve `/file=` requests from.
        file_roots: Vec<PathBuf>,
        /// gradio's working directory, against which it resolves a relative `/file=` path
        /// (upstream links files below it relatively: `util.truncate_path`).
        working_dir: Option<PathBuf>,
        /// The root view (`crate::views::root`): where a relative `/file=` path that is not below
        /// the working directory is looked for next (extensions link files relative to the
        /// root, which under upstream is the working directory).
        root_view: Option<PathBuf>,
    },
    /// Restarting or shutting down: nothing may reach gradio.
    Stopping,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The launcher gave no address (or none could be used).
    #[error("No address to listen on")]
    NoListenAddress,
    /// A public address could not be bound (in use, not permitted, not available).
    #[error("Failed to listen on `{addr}`")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The proxy with its public sockets open, not yet serving.
pub struct BoundProxy {
    listeners: Vec<TcpListener>,
    local_addrs: Vec<SocketAddr>,
    tls: Option<TlsAcceptor>,
    backend: SocketAddr,
    prefix: Option<String>,
    gradio_auth: bool,
    /// True while requests are forwarded to gradio (announced to users and systemd).
    forwarding: watch::Sender<bool>,
}

impl std::fmt::Debug for BoundProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundProxy")
            .field("local_addrs", &self.local_addrs)
            .field("tls", &self.tls.is_some())
            .field("backend", &self.backend)
            .field("prefix", &self.prefix)
            .field("gradio_auth", &self.gradio_auth)
            .finish()
    }
}

/// Opens the public sockets now, so "port in use" fails before the webui starts.
pub async fn bind(config: ProxyConfig) -> Result<BoundProxy, ProxyError> {
    let prefix = config.subpath.as_ref().and_then(Subpath::prefix);
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let listeners = listen::bind_all(&config.listen)?;
    let local_addrs = listeners
        .iter()
        .filter_map(|listener| listener.local_addr().ok())
        .collect();
    Ok(BoundProxy {
        listeners,
        local_addrs,
        tls,
        backend: config.backend,
        prefix,
        gradio_auth: config.gradio_auth,
        forwarding: watch::channel(false).0,
    })
}

/// What the proxy does with requests right now.
#[derive(Clone, Debug)]
enum Phase {
    /// Answer 503.
    Unavailable(Reason),
    /// Forward, and serve `/file=` from these roots.
    Ready(Arc<FileRoots>),
}

/// State shared by every connection.
#[derive(Debug)]
struct Shared {
    backend: Backend,
    prefix: Option<String>,
    scheme: &'static str,
    sessions: Option<Sessions>,
    phase: watch::Receiver<Phase>,
    stop: watch::Receiver<bool>,
}

impl BoundProxy {
    /// The addresses actually bound (with the real port where port 0 was asked for).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Becomes true once requests really reach gradio (after the webui's ready report has been
    /// taken in), false while starting or stopping: the moment to tell users the UI is up.
    pub fn forwarding(&self) -> watch::Receiver<bool> {
        self.forwarding.subscribe()
    }

    /// Serves until `shutdown` completes, then lets open requests finish for a few seconds
    /// and closes everything (websocket tunnels included).
    pub async fn serve(
        self,
        mut backend: watch::Receiver<BackendState>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ProxyError> {
        let BoundProxy {
            listeners,
            local_addrs,
            tls,
            backend: backend_addr,
            prefix,
            gradio_auth,
            forwarding,
        } = self;
        let initial = backend.borrow_and_update().clone();
        let (phase_tx, phase_rx) = watch::channel(phase_for(initial).await);
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            backend: Backend::new(backend_addr),
            prefix,
            scheme: if tls.is_some() { "https" } else { "http" },
            sessions: gradio_auth.then(Sessions::new),
            phase: phase_rx,
            stop: stop_rx,
        });
        forwarding.send_replace(matches!(*phase_tx.borrow(), Phase::Ready(_)));
        let tracker = tokio::spawn(track_backend(
            backend,
            phase_tx,
            forwarding,
            Arc::clone(&shared),
        ));
        for addr in &local_addrs {
            tracing::info!("proxy listening on {}://{addr}", shared.scheme);
        }

        let (accepted_tx, mut accepted) = mpsc::channel(ACCEPT_QUEUE);
        let acceptors: Vec<_> = listeners
            .into_iter()
            .map(|listener| tokio::spawn(listen::accept_loop(listener, accepted_tx.clone())))
            .collect();
        drop(accepted_tx);

        let builder = connection_builder();
        let graceful = GracefulShutdown::new();
        let mut connections = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                next = accepted.recv() => match next {
                    Some(next) => next,
                    None => break,
                },
            };
            while connections.try_join_next().is_some() {}
            connections.spawn(serve_connection(
                stream,
                peer,
                tls.clone(),
                builder.clone(),
                Arc::clone(&shared),
                graceful.watcher(),
            ));
        }

        tracing::debug!("proxy shutting down");
        for acceptor in &acceptors {
            acceptor.abort();
        }
        let _ = stop_tx.send(true);
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("closing connections still busy after the shutdown grace period");
        }
        connections.shutdown().await;
        tracker.abort();
        Ok(())
    }
}

fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// Follows the launcher's reports; roots are canonicalized here, once per change.
async fn track_backend(
    mut backend: watch::Receiver<BackendState>,
    phase: watch::Sender<Phase>,
    forwarding: watch::Sender<bool>,
    shared: Arc<Shared>,
) {
    while backend.changed().await.is_ok() {
        let state = backend.borrow_and_update().clone();
        let next = phase_for(state).await;
        if let Some(sessions) = &shared.sessions {
            sessions.clear();
        }
        let ready = matches!(next, Phase::Ready(_));
        phase.send_replace(next);
        forwarding.send_replace(ready);
    }
    tracing::debug!("backend state channel closed; keeping the last state");
}

async fn phase_for(state: BackendState) -> Phase {
    match state {
        BackendState::Starting => Phase::Unavailable(Reason::Starting),
        BackendState::Stopping => Phase::Unavailable(Reason::Stopping),
        BackendState::Ready {
            file_roots,
            working_dir,
            root_view,
        } => {
            let roots = tokio::task::spawn_blocking(move || {
                FileRoots::new(file_roots)
                    .with_working_dir(working_dir)
                    .with_root_view(root_view)
            })
            .await
            .unwrap_or_default();
            tracing::info!("gradio is ready; forwarding");
            Phase::Ready(Arc::new(roots))
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    shared: Arc<Shared>,
    watcher: Watcher,
) {
    match tls {
        None => serve_io(stream, peer, builder, shared, watcher).await,
        Some(acceptor) => {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve_io(stream, peer, builder, shared, watcher).await,
                Ok(Err(err)) => tracing::debug!(%peer, error = %err, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn serve_io<I>(
    io: I,
    peer: SocketAddr,
    builder: auto::Builder<TokioExecutor>,
    shared: Arc<Shared>,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(handle(&shared, peer, request).await) }
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    if let Err(err) = watcher.watch(connection.into_owned()).await {
        tracing::debug!(%peer, error = %err, "connection ended with an error");
    }
}

/// Routes one request: subpath, 503 while gradio is unavailable, `/file=`, websocket, or
/// plain pass-through.
async fn handle(shared: &Shared, peer: SocketAddr, request: Request<Incoming>) -> Response<Body> {
    let raw_path = request.uri().path();
    let inner = match &shared.prefix {
        None => raw_path,
        Some(prefix) => match raw_path.strip_prefix(prefix.as_str()) {
            Some(rest) if rest.starts_with('/') => rest,
            Some("") => {
                return redirect_to_prefix(prefix, &request, StatusCode::PERMANENT_REDIRECT);
            }
            _ if raw_path == "/" => {
                return redirect_to_prefix(prefix, &request, StatusCode::TEMPORARY_REDIRECT);
            }
            _ => return forward::plain(StatusCode::NOT_FOUND, "Not found\n"),
        },
    };
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{inner}?{query}"),
        None => inner.to_owned(),
    };
    let inner = &path_and_query[..inner.len()];

    let roots = match &*shared.phase.borrow() {
        Phase::Unavailable(reason) => {
            return unavailable::response(*reason, request.headers(), inner);
        }
        Phase::Ready(roots) => Arc::clone(roots),
    };
    let origin = Origin {
        peer,
        scheme: shared.scheme,
    };
    if matches!(*request.method(), Method::GET | Method::HEAD)
        && let Some(parsed) = files::parse(inner)
    {
        let context = file_route::Context {
            roots: &roots,
            sessions: shared.sessions.as_ref(),
            backend: &shared.backend,
        };
        if let Some(response) = file_route::respond(context, parsed, inner, &request).await {
            return response;
        }
    }
    if websocket::is_websocket_upgrade(&request) {
        let stop = shared.stop.clone();
        return websocket::tunnel(&shared.backend, request, &path_and_query, origin, stop).await;
    }
    forward::forward(&shared.backend, request, &path_and_query, origin).await
}

/// `/sd` → `/sd/` and `/` → `/sd/`, keeping the query.
fn redirect_to_prefix<B>(prefix: &str, request: &Request<B>, status: StatusCode) -> Response<Body> {
    let location = match request.uri().query() {
        Some(query) => format!("{prefix}/?{query}"),
        None => format!("{prefix}/"),
    };
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}
