//! The HTTPS listener: the same API under TLS, with HTTP/2 or HTTP/1.1 chosen per connection by
//! ALPN, as browsers and HTTP/2 upload clients expect.
//!
//! `axum::serve` only speaks plain TCP, so this is the accept loop it would run, plus the TLS
//! handshake: each connection is handled by hyper's auto builder in its own task. On shutdown
//! the loop stops accepting, every connection is told to finish its requests in flight
//! (HTTP/2 GOAWAY, HTTP/1.1 close after the current response) and the loop waits for them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// A client that has not finished its TLS handshake by then is dropped, so idle sockets cannot
/// pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS acceptor for the certificate chain and key in these PEM files, offering `h2` then
/// `http/1.1`.
pub fn acceptor(cert_file: &Path, key_file: &Path) -> anyhow::Result<TlsAcceptor> {
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("read tls.cert_file {}", cert_file.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "tls.cert_file {} holds no certificate",
        cert_file.display()
    );
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("read tls.key_file {}", key_file.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("set up TLS")?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("tls.cert_file and tls.key_file do not make a usable certificate and key")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` over TLS on `listener` until `shutdown`, then waits for open connections to
/// finish their requests.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: axum::Router,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "https: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let (acceptor, app, shutdown) = (acceptor.clone(), app.clone(), shutdown.clone());
        connections.spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "https: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "https: TLS handshake timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req| app.clone().oneshot(req));
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "https: connection ended with an error");
            }
        });
    }
    connections.close();
    connections.wait().await;
}
