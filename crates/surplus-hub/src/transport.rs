//! How the hub is reached: HTTPS with its own certificate (reloaded on SIGHUP), or plain HTTP on
//! loopback or behind a proxy that terminates TLS in front of it. Device secrets and session
//! tokens never cross a network in clear because of how the hub was started.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum_server::tls_rustls::RustlsConfig;

/// How long requests still running at shutdown may take to finish.
const DRAIN: Duration = Duration::from_secs(10);

/// The hub's transport, as the operator chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// HTTPS with this certificate chain and key (PEM files).
    Tls { cert: PathBuf, key: PathBuf },
    /// Plain HTTP. `behind_proxy`: a TLS-terminating proxy is in front, and it names the client
    /// in `X-Forwarded-For`.
    Plain { behind_proxy: bool },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransportError {
    #[error("give both --tls-cert and --tls-key (or neither)")]
    HalfTls,
    #[error(
        "{0} is not a loopback address, and plain HTTP would carry passwords and device secrets \
         readable: give --tls-cert and --tls-key, or --behind-proxy when a proxy in front \
         terminates TLS"
    )]
    PlainInTheOpen(SocketAddr),
}

impl Transport {
    /// The transport for serving on `listen`: HTTPS when given a certificate and its key;
    /// otherwise plain HTTP, only on loopback or behind a proxy.
    pub fn choose(
        listen: SocketAddr,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        behind_proxy: bool,
    ) -> Result<Transport, TransportError> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Transport::Tls { cert, key }),
            (None, None) if behind_proxy || listen.ip().is_loopback() => {
                Ok(Transport::Plain { behind_proxy })
            }
            (None, None) => Err(TransportError::PlainInTheOpen(listen)),
            _ => Err(TransportError::HalfTls),
        }
    }

    /// The scheme clients use.
    pub fn scheme(&self) -> &'static str {
        match self {
            Transport::Tls { .. } => "https",
            Transport::Plain { .. } => "http",
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets running requests finish.
pub async fn serve(
    listener: std::net::TcpListener,
    app: Router,
    transport: &Transport,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use anyhow::Context;
    match transport {
        Transport::Plain { behind_proxy } => {
            let app = if *behind_proxy {
                app.layer(axum::middleware::from_fn(forwarded_client))
            } else {
                app
            };
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            spawn_reloader(None);
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await?;
        }
        Transport::Tls { cert, key } => {
            let config = RustlsConfig::from_pem_file(cert, key)
                .await
                .with_context(|| {
                    format!(
                        "loading the TLS certificate {} and key {}",
                        cert.display(),
                        key.display()
                    )
                })?;
            spawn_reloader(Some((config.clone(), cert.clone(), key.clone())));
            let handle = axum_server::Handle::new();
            let stopping = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                stopping.graceful_shutdown(Some(DRAIN));
            });
            axum_server::from_tcp_rustls(listener, config)?
                .handle(handle)
                .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                .await?;
        }
    }
    Ok(())
}

/// On SIGHUP, loads the certificate and key again (a renewed certificate takes effect without a
/// restart). A pair that does not load is logged and the one in use is kept.
fn spawn_reloader(tls: Option<(RustlsConfig, PathBuf, PathBuf)>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            return;
        };
        while hangups.recv().await.is_some() {
            let Some((config, cert, key)) = &tls else {
                tracing::info!("SIGHUP: no TLS certificate to reload (serving plain HTTP)");
                continue;
            };
            match config.reload_from_pem_file(cert, key).await {
                Ok(()) => tracing::info!(cert = %cert.display(), "TLS certificate reloaded"),
                Err(error) => tracing::error!(
                    cert = %cert.display(), key = %key.display(), %error,
                    "the TLS certificate did not load; the previous one stays in use"
                ),
            }
        }
    });
    #[cfg(not(unix))]
    drop(tls);
}

/// Behind a proxy, the client is the last address in `X-Forwarded-For` (the one the proxy in
/// front added): rate limits per address then count clients, not the proxy. Addresses earlier in
/// the header come from the client and are not believed.
pub async fn forwarded_client(mut request: Request, next: Next) -> Response {
    if let Some(client) = last_forwarded(request.headers()) {
        let port = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(0, |info| info.0.port());
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(client, port)));
    }
    next.run(request).await
}

fn last_forwarded(headers: &axum::http::HeaderMap) -> Option<IpAddr> {
    let last = headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()?
        .to_str()
        .ok()?
        .rsplit(',')
        .next()?
        .trim();
    last.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("address")
    }

    #[test]
    fn plain_http_only_on_loopback_or_behind_a_proxy() {
        let cert = Some(PathBuf::from("hub.pem"));
        let key = Some(PathBuf::from("hub-key.pem"));
        assert_eq!(
            Transport::choose(addr("0.0.0.0:443"), cert.clone(), key.clone(), false),
            Ok(Transport::Tls {
                cert: "hub.pem".into(),
                key: "hub-key.pem".into()
            })
        );
        for local in ["127.0.0.1:7420", "[::1]:7420"] {
            assert_eq!(
                Transport::choose(addr(local), None, None, false),
                Ok(Transport::Plain {
                    behind_proxy: false
                })
            );
        }
        assert_eq!(
            Transport::choose(addr("0.0.0.0:7420"), None, None, false),
            Err(TransportError::PlainInTheOpen(addr("0.0.0.0:7420")))
        );
        assert_eq!(
            Transport::choose(addr("10.0.0.5:7420"), None, None, true),
            Ok(Transport::Plain { behind_proxy: true })
        );
        assert_eq!(
            Transport::choose(addr("127.0.0.1:7420"), cert, None, false),
            Err(TransportError::HalfTls)
        );
        assert_eq!(
            Transport::choose(addr("127.0.0.1:7420"), None, key, false),
            Err(TransportError::HalfTls)
        );
    }

    #[test]
    fn the_proxy_names_the_client_last() {
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(last_forwarded(&headers), None);
        headers.append(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7".parse().expect("header"),
        );
        assert_eq!(last_forwarded(&headers), "198.51.100.7".parse().ok());
        headers.append("x-forwarded-for", "2001:db8::1".parse().expect("header"));
        assert_eq!(last_forwarded(&headers), "2001:db8::1".parse().ok());
        let mut forged = axum::http::HeaderMap::new();
        forged.append("x-forwarded-for", "not an address".parse().expect("header"));
        assert_eq!(last_forwarded(&forged), None);
    }
}
