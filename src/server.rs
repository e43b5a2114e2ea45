//! Starting and stopping the HTTP server: hyper's HTTP/1 connections around the routes of
//! `http`, each one bounded.
//!
//! - **Who may ask** is decided once per request, before routing and before any runtime call
//!   (`http::access`); a refused request gets its 403/401 and nothing else happens.
//! - **Slow clients**: the request headers must arrive within the read timeout (hyper's header
//!   timeout, which also ends idle keep-alive connections), the body within the read timeout
//!   again (`http::read_body`), and an answer the client does not read for that long ends the
//!   connection. A TLS handshake has the same time.
//! - **At most `max_connections` connections**; further ones wait in the listen backlog.
//! - **A connection closed by the server with a request body still coming** (a 413 over the
//!   drain bound, a refusal) first stops writing and keeps reading for [`LINGER`], so that the
//!   client reads the answer instead of a reset.
//! - **Shutdown**: stop accepting (new connections are refused at once), let the requests in
//!   flight finish, close idle keep-alive connections.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Sleep;
use tower_service::Service;
use warp::http::{Request, header};
use warp::reply::Response;

use crate::collector::Collector;
use crate::error::{Error, Result};
use crate::http::access::{Access, LogLimiter};
use crate::http::tls::TlsFiles;
use crate::http::{self, App, access, reply};
use crate::metrics::Metrics;
use crate::settings::Settings;

/// How long a connection the server closes with unread request data keeps reading it.
pub const LINGER: Duration = Duration::from_secs(2);

/// A server that is listening. Dropping it leaves the server running until the runtime stops.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// `https` with `--tls-cert`, else `http`.
    pub scheme: &'static str,
    app: Arc<App>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl RunningServer {
    /// Says which runtime the collector reads (name, version, endpoint), or why none answers
    /// yet; `/readyz` and `/metrics` keep saying it afterwards.
    pub fn announce_runtime(&self) -> impl Future<Output = ()> + Send + 'static {
        let app = self.app.clone();
        async move {
            match app.collector.ready().await {
                Ok(runtime) => log::info!(
                    "reading pods from {} {} ({})",
                    runtime["runtime"].as_str().unwrap_or_default(),
                    runtime["version"].as_str().unwrap_or_default(),
                    runtime["endpoint"].as_str().unwrap_or_default()
                ),
                Err(err) => log::warn!(
                    "no runtime answers yet ({}): {err}; serving anyway, and trying again on every request",
                    app.collector.runtime_choice()
                ),
            }
        }
    }

    /// `scheme://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the server to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }

    /// Runs until `signal` resolves, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }
}

type Routes =
    Arc<dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response> + Send>> + Send + Sync>;

/// What every connection shares.
struct Server {
    access: Access,
    tls: Option<TlsFiles>,
    routes: Routes,
    metrics: Arc<Metrics>,
    read_timeout: Duration,
    refusals_logged: LogLimiter,
}

/// Binds the listen address and serves in the background. The Docker daemon is not needed to
/// start: requests report it until it answers. A token file or TLS files that do not load are
/// configuration errors.
pub async fn start(settings: Settings) -> Result<RunningServer> {
    let metrics = Arc::new(Metrics::new());
    let access = Access::new(settings.allow_from.clone(), settings.token_file.as_deref())?;
    let tls = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles::load(cert, key)?),
        (None, None) => None,
        _ => {
            return Err(Error::Config(
                "--tls-cert and --tls-key go together".to_string(),
            ));
        }
    };
    log::info!("{}", access.describe());
    if access.allows_any_address() {
        log::warn!(
            "--allow-from any: anyone who reaches port {} can read every pod's command lines, \
             annotations and mounts{}",
            settings.listen.port(),
            if access.requires_token() {
                " if they hold the token"
            } else {
                "; restrict it with a firewall or --token-file"
            }
        );
    }
    if let Some(tls) = &tls {
        log::info!(
            "TLS: serving HTTPS with {} (read again when it changes)",
            tls.cert_path().display()
        );
    }
    let app = Arc::new(App {
        collector: Collector::new(&settings, metrics.clone())?,
        body_limit: settings.body_limit,
        read_timeout: settings.read_timeout,
        reveal: settings.reveal_env,
        metrics: metrics.clone(),
    });
    let filtered = warp::service(http::routes(app.clone()));
    let routes: Routes = Arc::new(move |request| {
        let mut service = filtered.clone();
        Box::pin(async move {
            match service.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        })
    });
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|err| Error::Config(format!("cannot listen on {}: {err}", settings.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|err| Error::Config(format!("cannot read the listen address: {err}")))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let server = Arc::new(Server {
        access,
        tls,
        routes,
        metrics,
        read_timeout: settings.read_timeout,
        refusals_logged: LogLimiter::default(),
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(accept_loop(
        listener,
        server,
        settings.max_connections,
        stopped,
    ));
    Ok(RunningServer {
        addr,
        scheme,
        app,
        stop,
        task,
    })
}

async fn accept_loop(
    listener: TcpListener,
    server: Arc<Server>,
    max_connections: usize,
    stopped: oneshot::Receiver<()>,
) {
    let max = max_connections.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let permits = Arc::new(Semaphore::new(max));
    let (shutdown, shutdown_seen) = watch::channel(false);
    // A dropped RunningServer leaves the server running.
    let stopped = async move {
        if stopped.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(stopped);
    let mut full_logged: Option<Instant> = None;
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if full_logged.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                    log::warn!(
                        "{max} connections open (--max-connections): new ones wait until one \
                         closes"
                    );
                    full_logged = Some(Instant::now());
                }
                tokio::select! {
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    _ = &mut stopped => break,
                }
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stopped => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                tokio::spawn(connection(
                    server.clone(),
                    stream,
                    peer,
                    shutdown_seen.clone(),
                    permit,
                ));
            }
            Err(err) => {
                // Out of file descriptors and the like: wait rather than spin.
                log::warn!("cannot accept a connection: {err}");
                drop(permit);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    let _ = shutdown.send(true);
    // Every connection holds a permit until it ends.
    let _ = permits.acquire_many(max as u32).await;
}

/// Counts the connection as open while it lives.
struct OpenConnection(Arc<Metrics>);

impl OpenConnection {
    fn new(metrics: &Arc<Metrics>) -> Self {
        metrics.connection_opened();
        OpenConnection(metrics.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

async fn connection(
    server: Arc<Server>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let _open = OpenConnection::new(&server.metrics);
    let _ = stream.set_nodelay(true);
    let linger = Arc::new(AtomicBool::new(false));
    let io = Guarded::new(stream, server.read_timeout, linger.clone());
    let Some(tls) = &server.tls else {
        return serve(server.clone(), TokioIo::new(io), peer, linger, shutdown).await;
    };
    let Some(acceptor) = tls.acceptor() else {
        return;
    };
    match tokio::time::timeout(server.read_timeout, acceptor.accept(io)).await {
        Ok(Ok(stream)) => serve(server.clone(), TokioIo::new(stream), peer, linger, shutdown).await,
        Ok(Err(err)) => {
            server.metrics.refused("tls_handshake");
            log::debug!("TLS handshake with {peer} failed: {err}");
        }
        Err(_) => {
            server.metrics.refused("tls_handshake");
            log::debug!(
                "TLS handshake with {peer} did not finish within {:?}",
                server.read_timeout
            );
        }
    }
}

async fn serve<I>(
    server: Arc<Server>,
    io: I,
    peer: SocketAddr,
    linger: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let handler = server.clone();
    // Whether a request came in: the header timeout then closes an idle keep-alive
    // connection, which is housekeeping, not a slow client.
    let served = Arc::new(AtomicBool::new(false));
    let seen = served.clone();
    let service = service_fn(move |request| {
        let server = handler.clone();
        let linger = linger.clone();
        seen.store(true, Ordering::Relaxed);
        async move { Ok::<_, Infallible>(server.handle(request, peer, &linger).await) }
    });
    // A client may shut its write side once its request is sent (`nc -N`, some proxies); it
    // still gets its answer. Without this, hyper drops such a request when it reads the end
    // of the stream before the answer is ready.
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .half_close(true)
        .header_read_timeout(server.read_timeout)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let stop = async move {
        // The guard `wait_for` returns must not live across an await.
        let _ = shutdown.wait_for(|stop| *stop).await.is_ok();
    };
    let outcome = tokio::select! {
        outcome = connection.as_mut() => outcome,
        () = stop => {
            connection.as_mut().graceful_shutdown();
            connection.as_mut().await
        }
    };
    if let Err(err) = outcome {
        if err.is_timeout() && served.load(Ordering::Relaxed) {
            log::debug!("connection from {peer}: idle keep-alive connection closed");
        } else if err.is_timeout() {
            server.metrics.refused("header_timeout");
            log::debug!(
                "connection from {peer}: no complete request headers within {:?}, closed",
                server.read_timeout
            );
        } else if is_write_timeout(&err) {
            server.metrics.refused("write_timeout");
            log::debug!("connection from {peer}: the answer was not read, closed");
        } else {
            log::debug!("connection from {peer}: {err}");
        }
    }
}

fn is_write_timeout(err: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return io.kind() == io::ErrorKind::TimedOut;
        }
        source = cause.source();
    }
    false
}

impl Server {
    /// One request: refused here, or passed (without its token) to the routes.
    async fn handle(
        &self,
        mut request: Request<Incoming>,
        peer: SocketAddr,
        linger: &AtomicBool,
    ) -> Response {
        let started = Instant::now();
        let path = request.uri().path();
        if !Access::is_open(path) {
            if let Err(refusal) = self
                .access
                .check(peer.ip(), request.uri(), request.headers())
            {
                let response = reply::refused(&refusal);
                let status = response.status().as_u16();
                self.metrics.refused(refusal.reason());
                self.metrics
                    .request(http::route_of(path), status, started.elapsed());
                if let Some(left_out) = self.refusals_logged.admit() {
                    let shown: String = path.chars().take(100).collect();
                    let earlier = if left_out > 0 {
                        format!(" ({left_out} earlier refusals not logged)")
                    } else {
                        String::new()
                    };
                    log::warn!(
                        "{} {shown:?} from {}: {status}: {refusal}{earlier}",
                        request.method(),
                        peer.ip().to_canonical()
                    );
                }
                linger.store(true, Ordering::Relaxed);
                return response;
            }
            let uri = access::without_token(request.uri());
            *request.uri_mut() = uri;
        }
        let response = (self.routes)(request).await;
        if response
            .headers()
            .get(header::CONNECTION)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"close"))
        {
            linger.store(true, Ordering::Relaxed);
        }
        response
    }
}

/// A TCP connection with two bounds hyper does not keep: an answer the client does not read
/// for the read timeout fails the write, and a close the server decides with request data
/// still coming ([`LINGER`]) first shuts the write side, then reads for a while.
struct Guarded {
    inner: TcpStream,
    timeout: Duration,
    write_stalled: Option<Pin<Box<Sleep>>>,
    linger: Arc<AtomicBool>,
    lingering: Option<Pin<Box<Sleep>>>,
}

impl Guarded {
    fn new(inner: TcpStream, timeout: Duration, linger: Arc<AtomicBool>) -> Self {
        Guarded {
            inner,
            timeout,
            write_stalled: None,
            linger,
            lingering: None,
        }
    }

    /// Called when a write is pending: fails once it has been pending for the timeout.
    fn check_stall(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let timeout = self.timeout;
        let stall = self
            .write_stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read the answer",
            )),
            Poll::Pending => Ok(()),
        }
    }

    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(result) => {
                self.write_stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => match self.check_stall(cx) {
                Ok(()) => Poll::Pending,
                Err(err) => Poll::Ready(Err(err)),
            },
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.linger.load(Ordering::Relaxed) {
            return Pin::new(&mut self.inner).poll_shutdown(cx);
        }
        if self.lingering.is_none() {
            ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
            self.lingering = Some(Box::pin(tokio::time::sleep(LINGER)));
        }
        let mut scratch = [0u8; 8192];
        loop {
            if let Some(deadline) = self.lingering.as_mut()
                && deadline.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                // The client closed, or the connection broke: done.
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
