use std::process::ExitCode;

use clap::Parser;
use pod_detail_collector::cli::{Cli, Command};
use pod_detail_collector::{collector::Collector, server};

fn main() -> ExitCode {
    pod_detail_collector::memory::configure();
    // Two workers whatever the node's size: the work is waiting on Docker, and every thread
    // costs memory on every node of the cluster. The rebuilds run on blocking threads: a few
    // are enough for two cores, and they go soon after a burst (their stacks with them).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .thread_keep_alive(std::time::Duration::from_secs(2))
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(run()),
        Err(err) => {
            eprintln!("pod-detail-collector: cannot start: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve(args) => serve(args.settings()).await,
        Command::Get(args) => get(&args).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pod-detail-collector: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: pod_detail_collector::Settings) -> anyhow::Result<()> {
    log::info!(
        "pod-detail-collector {} on node {:?}, runtime timeout {:?}",
        env!("CARGO_PKG_VERSION"),
        settings.node_name,
        settings.runtime_timeout
    );
    if settings.reveal_env {
        log::warn!(
            "environment values: revealed, and command-line credentials too (--reveal-env): \
             answers show secrets passed as env or flags"
        );
    } else {
        log::info!(
            "environment values: redacted, and command-line credentials too (--reveal-env shows \
             them)"
        );
    }
    let running = server::start(settings).await?;
    tokio::spawn(running.announce_runtime());
    tokio::spawn(pod_detail_collector::memory::trim_periodically());
    log::info!(
        "serving POST /processor/podDetailCollector on {}",
        running.url("")
    );
    running.run_until(shutdown_signal()).await;
    log::info!("stopped");
    Ok(())
}

async fn get(args: &pod_detail_collector::cli::GetArgs) -> anyhow::Result<()> {
    let pod_ref = args.pod_ref()?;
    // One answer gains nothing from the event index: it would list the whole node first.
    let settings = pod_detail_collector::Settings {
        event_index: false,
        ..args.node.settings()
    };
    let collector = Collector::new(&settings, Default::default())?;
    let pod = collector.pod(&pod_ref).await?;
    let pod: serde_json::Value =
        serde_json::from_str(&pod_detail_collector::rebuild::to_json(&pod)?)?;
    println!("{}", serde_json::to_string_pretty(&pod)?);
    Ok(())
}

/// SIGTERM (the kubelet stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = ctrl_c => {}
                }
            }
            Err(err) => {
                log::warn!("cannot watch SIGTERM ({err}); stopping on Ctrl-C only");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    log::info!("shutting down: finishing requests in flight");
}
