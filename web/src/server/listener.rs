//! The server's listening socket: plain TCP or TLS (`tls_server_config` of
//! `--web.config.file`), and the `--web.max-connections` limit.
//!
//! The limit works like Go's `netutil.LimitListener`, which Prometheus uses: a connection slot
//! is taken *before* `accept`, so when all slots are busy further clients wait in the kernel's
//! backlog (they are neither accepted nor refused) until a connection closes. 0 means no limit.
//!
//! With TLS, each accepted connection is handshaken in its own task (a slow client does not
//! hold up the others), under a 10 s timeout. A client that speaks plain HTTP to the TLS port
//! gets Go's `400 Bad Request` "Client sent an HTTP request to an HTTPS server." and is
//! closed. Like Prometheus, which re-reads the web config file for each connection, the TLS
//! settings are rebuilt when the web config file or its certificate, key or CA files change
//! (checked by modification time on each connection); a broken edit is logged and the last
//! good settings stay in use.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;

use super::webconfig::WebConfig;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What Go's HTTP server answers to plain HTTP on a TLS port.
const PLAIN_HTTP_ON_TLS: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// An accepted connection: plain or TLS, holding its connection slot until dropped.
pub struct Conn {
    io: Io,
    _slot: Option<OwnedSemaphorePermit>,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The TLS settings, rebuilt when the files they come from change.
struct TlsSource {
    config_path: PathBuf,
    current: Mutex<TlsCurrent>,
}

/// The settings in use and the files (with their modification times) they were built from.
struct TlsCurrent {
    files: Vec<PathBuf>,
    stamps: Vec<Option<SystemTime>>,
    config: Arc<rustls::ServerConfig>,
}

fn mtimes(files: &[PathBuf]) -> Vec<Option<SystemTime>> {
    files
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

impl TlsCurrent {
    fn new(
        config_path: &std::path::Path,
        cfg: &WebConfig,
        config: Arc<rustls::ServerConfig>,
    ) -> Self {
        let files: Vec<PathBuf> = std::iter::once(config_path.to_path_buf())
            .chain(cfg.tls_files())
            .collect();
        TlsCurrent {
            stamps: mtimes(&files),
            files,
            config,
        }
    }
}

impl TlsSource {
    /// The settings to use for a new connection.
    fn get(&self) -> Arc<rustls::ServerConfig> {
        let mut cur = self.current.lock();
        let now = mtimes(&cur.files);
        if now == cur.stamps {
            return cur.config.clone();
        }
        match WebConfig::load(&self.config_path) {
            Ok(cfg) => match cfg.server_tls_config() {
                Ok(tls) => {
                    tracing::info!("Web config file changed: TLS settings reloaded");
                    *cur = TlsCurrent::new(&self.config_path, &cfg, tls);
                    return cur.config.clone();
                }
                Err(e) => {
                    tracing::error!(err = %e, "Reloading the TLS settings failed; keeping the previous ones")
                }
            },
            Err(e) => {
                tracing::error!(err = %e, "Reloading the web config file failed; keeping the previous TLS settings")
            }
        }
        // Do not retry on every connection until the files change again.
        cur.stamps = now;
        cur.config.clone()
    }
}

/// The listener handed to `axum::serve`: connections arrive from the accept task.
pub struct ServerListener {
    rx: mpsc::Receiver<(Conn, SocketAddr)>,
    local: SocketAddr,
}

impl ServerListener {
    /// Binds `addr` and starts accepting. `max_connections` 0 means unlimited; `web_config`
    /// (with the path it came from) turns on TLS when it has a `tls_server_config`.
    pub async fn bind(
        addr: &str,
        max_connections: usize,
        web_config: Option<(PathBuf, &WebConfig)>,
    ) -> anyhow::Result<ServerListener> {
        let tcp = TcpListener::bind(addr).await?;
        let local = tcp.local_addr()?;
        let tls = match web_config {
            Some((path, cfg)) if cfg.tls_enabled() => {
                let tls = cfg.server_tls_config().map_err(anyhow::Error::msg)?;
                Some(Arc::new(TlsSource {
                    current: Mutex::new(TlsCurrent::new(&path, cfg, tls)),
                    config_path: path,
                }))
            }
            _ => None,
        };
        tracing::info!(
            address = %local,
            tls = tls.is_some(),
            max_connections,
            "{}",
            if tls.is_some() { "TLS is enabled." } else { "TLS is disabled." }
        );
        let limit = (max_connections > 0).then(|| Arc::new(Semaphore::new(max_connections)));
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(accept_loop(tcp, limit, tls, tx));
        Ok(ServerListener { rx, local })
    }
}

impl axum::serve::Listener for ServerListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task ended (it only does when this listener is dropped).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    tcp: TcpListener,
    limit: Option<Arc<Semaphore>>,
    tls: Option<Arc<TlsSource>>,
    tx: mpsc::Sender<(Conn, SocketAddr)>,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = match &limit {
            Some(sem) => tokio::select! {
                p = sem.clone().acquire_owned() => match p {
                    Ok(p) => Some(p),
                    Err(_) => return,
                },
                _ = tx.closed() => return,
            },
            None => None,
        };
        let (stream, peer) = tokio::select! {
            r = tcp.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait and retry, as Go does.
                    tracing::error!(err = %e, "Accept error; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            _ = tx.closed() => return,
        };
        backoff = Duration::from_millis(5);
        let _ = stream.set_nodelay(true);
        match &tls {
            None => {
                if tx
                    .send((
                        Conn {
                            io: Io::Plain(stream),
                            _slot: permit,
                        },
                        peer,
                    ))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Some(tls) => {
                let (tls, tx) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Some(conn) = handshake(stream, peer, &tls).await {
                        let _ = tx
                            .send((
                                Conn {
                                    io: Io::Tls(Box::new(conn)),
                                    _slot: permit,
                                },
                                peer,
                            ))
                            .await;
                    }
                });
            }
        }
    }
}

async fn handshake(
    mut stream: TcpStream,
    peer: SocketAddr,
    tls: &TlsSource,
) -> Option<TlsStream<TcpStream>> {
    let work = async {
        // A TLS connection starts with a handshake record (0x16); plain HTTP with a method.
        let mut first = [0u8; 1];
        let n = stream.peek(&mut first).await.ok()?;
        if n == 1 && first[0].is_ascii_uppercase() {
            tracing::debug!(%peer, "Plain HTTP request on the TLS port");
            let _ = stream.write_all(PLAIN_HTTP_ON_TLS).await;
            let _ = stream.shutdown().await;
            return None;
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.get());
        match acceptor.accept(stream).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(%peer, err = %e, "TLS handshake error");
                None
            }
        }
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, work).await {
        Ok(r) => r,
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}
