//! The HTTP listeners: the plain one (HTTP/1.1 and h2c) and the HTTPS one, with HTTP/2 or
//! HTTP/1.1 chosen per connection by ALPN, as browsers and HTTP/2 upload clients expect.
//!
//! This is the accept loop `axum::serve` would run, plus the TLS handshake where there is one and
//! HTTP/2 settings sized for uploads (see [`builder`]): each connection is handled by hyper's
//! auto builder in its own task. On shutdown the loop stops accepting, every connection is told
//! to finish its requests in flight (HTTP/2 GOAWAY, HTTP/1.1 close after the current response)
//! and the loop waits for them.

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

/// HTTP/2 receive windows. hyper's defaults (1 MiB per stream and per connection, 16 KiB
/// frames) hold an h2c upload on loopback to about a third of what the same body reaches over
/// HTTP/1.1 (BENCHMARKS.md, "Uploads"): the sender keeps stopping for window updates. A stream
/// may have this much received but not yet written to disk, so it is also the memory an
/// upload can hold beyond its write buffer.
const H2_STREAM_WINDOW: u32 = 8 * 1024 * 1024;
/// All streams of one connection together.
const H2_CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
/// Largest DATA frame a client may send: fewer, larger frames for big bodies.
const H2_MAX_FRAME: u32 = 1024 * 1024;

/// hyper's connection builder with the HTTP/2 settings above.
fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_frame_size(H2_MAX_FRAME);
    builder
}

/// Serves `app` on `listener` (over TLS when `acceptor` is given) until `shutdown`, then waits
/// for open connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
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
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // Small frames (window updates, short answers) go out at once rather than waiting on
        // Nagle's algorithm for the peer's ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "could not set TCP_NODELAY");
        }
        let (acceptor, app, shutdown) = (acceptor.clone(), app.clone(), shutdown.clone());
        connections.spawn(async move {
            let Some(acceptor) = acceptor else {
                serve_connection(TokioIo::new(tcp), app, shutdown, peer).await;
                return;
            };
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
            serve_connection(TokioIo::new(tls), app, shutdown, peer).await;
        });
    }
    connections.close();
    connections.wait().await;
}

/// Serves one connection until it ends, or until `shutdown` and its requests in flight end.
async fn serve_connection<I>(
    io: I,
    app: axum::Router,
    shutdown: CancellationToken,
    peer: std::net::SocketAddr,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| app.clone().oneshot(req));
    let builder = builder();
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
