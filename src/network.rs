//! The one place where upstream's network flags are mapped.
//!
//! The user-facing meaning stays upstream's (`--listen`, `--port`, `--server-name`,
//! `--subpath`, TLS). Behind the proxy, gradio itself always binds a private loopback port
//! chosen here, and the public side belongs to the launcher.

use crate::cli::NetworkArgs;
pub use crate::proxy::TlsFiles;
use crate::subpath::Subpath;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, ToSocketAddrs};

/// Upstream's default port.
pub const DEFAULT_PORT: u16 = 7860;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("Cannot resolve --server-name `{name}`")]
    Resolve {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Failed to find a free loopback port for gradio")]
    PrivatePort(#[source] std::io::Error),
}

/// Resolved network layout for one run.
#[derive(Debug, Clone)]
pub struct NetworkPlan {
    /// Where users connect (the launcher's proxy).
    pub public: Vec<SocketAddr>,
    /// Where gradio listens: a free loopback port, behind the proxy.
    pub backend: SocketAddr,
    /// Reachable from other machines (upstream's "non-local" protections apply).
    pub non_local: bool,
    /// Path prefix (never the root: that is `None`).
    pub subpath: Option<Subpath>,
    pub tls: Option<TlsFiles>,
    pub autolaunch: bool,
    /// Host name as the user gave it, for the printed URL.
    display_host: String,
}

impl NetworkPlan {
    pub fn new(args: &NetworkArgs) -> Result<NetworkPlan, NetworkError> {
        let port = args.port.unwrap_or(DEFAULT_PORT);
        let (public, display_host) = match (&args.server_name, args.listen) {
            (Some(name), _) => {
                let addrs = (name.as_str(), port)
                    .to_socket_addrs()
                    .map_err(|source| NetworkError::Resolve {
                        name: name.clone(),
                        source,
                    })?
                    .collect();
                (addrs, name.clone())
            }
            (None, true) => (
                vec![
                    SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
                    SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
                ],
                "0.0.0.0".to_owned(),
            ),
            (None, false) => (
                vec![SocketAddr::from((Ipv4Addr::LOCALHOST, port))],
                "127.0.0.1".to_owned(),
            ),
        };
        let non_local = public.iter().any(|a| !a.ip().is_loopback());
        let backend = SocketAddr::from((Ipv4Addr::LOCALHOST, free_loopback_port()?));
        let subpath = args.subpath.clone().filter(|s| !s.is_root());
        let tls = match (&args.tls_certfile, &args.tls_keyfile) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        Ok(NetworkPlan {
            public,
            backend,
            non_local,
            subpath,
            tls,
            autolaunch: args.autolaunch,
            display_host,
        })
    }

    /// Arguments appended after the user's, so they win over any abbreviation upstream's
    /// argparse would accept (`--serv 0.0.0.0`).
    pub fn webui_args(&self) -> Vec<String> {
        let mut args = vec![
            "--port".to_owned(),
            self.backend.port().to_string(),
            "--server-name".to_owned(),
            self.backend.ip().to_string(),
        ];
        if let Some(subpath) = &self.subpath {
            args.extend(["--subpath".to_owned(), subpath.to_string()]);
        }
        // TLS is the proxy's: gradio behind it speaks plain HTTP on loopback.
        args
    }

    /// The URL to print and open.
    pub fn public_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let host = match self.display_host.as_str() {
            "0.0.0.0" | "::" => "localhost",
            other => other,
        };
        let port = self.public.first().map_or(DEFAULT_PORT, SocketAddr::port);
        let subpath = self
            .subpath
            .as_ref()
            .map_or(String::new(), |s| format!("{s}/"));
        format!("{scheme}://{host}:{port}/{subpath}")
    }
}

fn free_loopback_port() -> Result<u16, NetworkError> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(NetworkError::PrivatePort)?;
    let port = listener
        .local_addr()
        .map_err(NetworkError::PrivatePort)?
        .port();
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(f: impl FnOnce(&mut NetworkArgs)) -> NetworkArgs {
        let mut a = NetworkArgs::default();
        f(&mut a);
        a
    }

    #[test]
    fn default_is_loopback_7860_and_local() {
        let plan = NetworkPlan::new(&args(|_| {})).unwrap();
        assert_eq!(plan.public, vec!["127.0.0.1:7860".parse().unwrap()]);
        assert!(!plan.non_local);
        assert!(plan.backend.ip().is_loopback());
        assert_ne!(plan.backend.port(), 7860);
        assert_eq!(plan.public_url(), "http://127.0.0.1:7860/");
    }

    #[test]
    fn listen_is_all_interfaces_and_non_local_but_gradio_stays_private() {
        let plan = NetworkPlan::new(&args(|a| a.listen = true)).unwrap();
        assert!(plan.non_local);
        assert_eq!(plan.public.len(), 2);
        let webui = plan.webui_args();
        assert_eq!(
            webui[2..4],
            ["--server-name".to_owned(), "127.0.0.1".to_owned()]
        );
    }

    #[test]
    fn tls_and_subpath_are_the_proxys_and_gradio_gets_plain_http_on_loopback() {
        let plan = NetworkPlan::new(&args(|a| {
            a.port = Some(9000);
            a.subpath = Some("/sd/".parse().unwrap());
            a.tls_certfile = Some("c.pem".into());
            a.tls_keyfile = Some("k.pem".into());
        }))
        .unwrap();
        let webui = plan.webui_args();
        assert_eq!(
            webui[2..],
            ["--server-name", "127.0.0.1", "--subpath", "sd"]
        );
        assert_ne!(webui[1], "9000");
        assert_eq!(plan.public_url(), "https://127.0.0.1:9000/sd/");
    }

    #[test]
    fn a_root_subpath_is_no_subpath() {
        let plan = NetworkPlan::new(&args(|a| a.subpath = Some("/".parse().unwrap()))).unwrap();
        assert_eq!(plan.subpath, None);
        assert!(!plan.webui_args().contains(&"--subpath".to_owned()));
    }
}
