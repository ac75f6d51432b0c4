//! The public sockets.
//!
//! Sockets are made with `socket2` rather than `TcpListener::bind` for one reason: `--listen`
//! binds both `0.0.0.0` and `::`, and on Linux an IPv6 wildcard socket is dual-stack by default,
//! so the second bind would fail with "address in use". IPv6 sockets are therefore
//! `IPV6_V6ONLY`. A host without IPv6 should still start with `--listen`, so an IPv6 address
//! that the system cannot provide is skipped (logged) when other addresses were given.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::ProxyError;

/// Pending connections the kernel queues for each listener.
const BACKLOG: i32 = 1024;

/// Pause after an accept error (out of file descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Binds every address; fails on the first one that cannot be bound, except as described in
/// the module doc for IPv6.
pub fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, ProxyError> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        match bind_one(addr) {
            Ok(listener) => listeners.push(listener),
            Err(source) if addr.is_ipv6() && addrs.len() > 1 && ipv6_unavailable(&source) => {
                tracing::warn!(%addr, error = %source, "IPv6 is not available; not listening there");
            }
            Err(source) => return Err(ProxyError::Bind { addr, source }),
        }
    }
    if listeners.is_empty() {
        return Err(ProxyError::NoListenAddress);
    }
    Ok(listeners)
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Lets a restarted launcher rebind while old connections sit in TIME_WAIT; on Unix this
    // does not allow two live listeners on one port.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

fn ipv6_unavailable(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::AddrNotAvailable
        || err.raw_os_error() == Some(libc::EAFNOSUPPORT)
        || err.raw_os_error() == Some(libc::EADDRNOTAVAIL)
}

/// Accepts connections and hands them to the serve loop until it goes away.
pub async fn accept_loop(listener: TcpListener, accepted: mpsc::Sender<(TcpStream, SocketAddr)>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if let Err(err) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, error = %err, "could not set TCP_NODELAY");
                }
                if accepted.send((stream, peer)).await.is_err() {
                    return;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}
