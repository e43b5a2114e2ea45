//! Starting and stopping the HTTP server.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::collector::Collector;
use crate::error::{Error, Result};
use crate::http::{self, App};
use crate::metrics::Metrics;
use crate::settings::Settings;

/// A server that is listening. Dropping it leaves the server running until the runtime stops.
pub struct RunningServer {
    pub addr: SocketAddr,
    app: Arc<App>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish, and waits for the server to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }

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

    /// Runs until `signal` resolves, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }
}

/// Binds the listen address and serves in the background. The Docker daemon is not needed to
/// start: requests report it until it answers.
pub async fn start(settings: Settings) -> Result<RunningServer> {
    let metrics = Arc::new(Metrics::new());
    let app = Arc::new(App {
        collector: Collector::new(&settings, metrics.clone())?,
        body_limit: settings.body_limit,
        metrics,
    });
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|err| Error::Config(format!("cannot listen on {}: {err}", settings.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|err| Error::Config(format!("cannot read the listen address: {err}")))?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = warp::serve(http::routes(app.clone()))
        .incoming(listener)
        .graceful(async {
            let _ = stopped.await;
        });
    let task = tokio::spawn(server.run());
    Ok(RunningServer {
        addr,
        app,
        stop,
        task,
    })
}
