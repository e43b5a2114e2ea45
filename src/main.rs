use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use k8s_openapi::api::core::v1::Pod;
use pod_detail_collector::cli::{self, Cli, Command, GetArgs, GetRequest, Output, Target, exit};
use pod_detail_collector::printer::{self, Columns};
use pod_detail_collector::{Error, collector::Collector, rebuild, server};

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
    let cli = Cli::parse();
    // The service logs what it does; a one-shot command only what is wrong, unless RUST_LOG
    // says otherwise.
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        Command::Get(_) | Command::Completions { .. } => "warn",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level))
        .init();
    match cli.command {
        Command::Serve(args) => match serve(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(&format!("{err:#}"), exit::FAILURE),
        },
        Command::Get(args) => get(&args).await,
        Command::Completions { shell } => print(&cli::completion_script(shell)),
    }
}

/// The error as one sentence for the command line (a usage error is not an HTTP request's).
fn sentence(err: &Error) -> String {
    match err {
        Error::BadRequest(text) => text.clone(),
        other => other.to_string(),
    }
}

/// One sentence on stderr, and the code that tells the failure apart.
fn fail(message: &str, code: u8) -> ExitCode {
    let sentence = message.split_whitespace().collect::<Vec<_>>().join(" ");
    eprintln!("pod-detail-collector: {sentence}");
    ExitCode::from(code)
}

/// Writes to stdout; a reader that went away (`| head`) ends the command quietly.
fn print(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => fail(&format!("cannot write the output: {err}"), exit::FAILURE),
    }
}

async fn serve(args: cli::ServeArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
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

/// `get`: the pods through the collector (the server's own code path), printed as asked.
async fn get(args: &GetArgs) -> ExitCode {
    let request = match args.request() {
        Ok(request) => request,
        Err(err) => return fail(&sentence(&err), cli::exit_code(&err)),
    };
    // One answer gains nothing from the event index: it would list the whole node first.
    let collector = match args.node.settings().and_then(|settings| {
        let settings = pod_detail_collector::Settings {
            event_index: false,
            ..settings
        };
        Collector::new(&settings, Default::default())
    }) {
        Ok(collector) => collector,
        Err(err) => return fail(&sentence(&err), cli::exit_code(&err)),
    };
    let mut not_found = Vec::new();
    let pods = match &request.target {
        Target::Pods { namespace } => match collector.pods(namespace.as_deref()).await {
            Ok(pods) => pods,
            Err(err) => return fail(&sentence(&err), cli::exit_code(&err)),
        },
        Target::Named(names) => {
            let mut pods = Vec::new();
            for name in names {
                match collector.pod(name).await {
                    Ok(pod) => pods.push(pod),
                    Err(err @ Error::PodNotFound { .. }) => not_found.push(err),
                    Err(err) => return fail(&sentence(&err), cli::exit_code(&err)),
                }
            }
            pods
        }
    };
    let printed = match render(&request, &pods) {
        Ok(text) => text,
        Err(err) => return fail(&err, exit::FAILURE),
    };
    let status = print(&printed);
    if let Some(message) = nothing_found(&request, &pods, &collector) {
        eprintln!("{message}");
    }
    if not_found.is_empty() {
        return status;
    }
    let hint = match (&request.target, &args.namespace) {
        (Target::Named(_), None) if !request.namespace_column => {
            " (without -n, `pod NAME` looks in namespace default)"
        }
        _ => "",
    };
    for err in &not_found {
        fail(&format!("{err}{hint}"), exit::NOT_FOUND);
    }
    ExitCode::from(exit::NOT_FOUND)
}

/// The pods in the format asked for.
fn render(request: &GetRequest, pods: &[Pod]) -> Result<String, String> {
    let json = || -> Result<String, String> {
        let mut texts = Vec::with_capacity(pods.len());
        for pod in pods {
            texts.push(
                rebuild::to_json(pod)
                    .map_err(|err| format!("the pod could not be written as JSON: {err}"))?,
            );
        }
        // One pod asked for by name prints as itself, anything else as a List, as kubectl.
        Ok(match (&request.target, texts.as_slice()) {
            (Target::Named(names), [one]) if names.len() == 1 => one.clone(),
            _ => printer::list_json(&texts),
        })
    };
    Ok(match request.output {
        None | Some(Output::Wide) => {
            if pods.is_empty() {
                return Ok(String::new());
            }
            let now = k8s_openapi::jiff::Timestamp::now();
            let rows: Vec<_> = pods.iter().map(|pod| printer::pod_row(pod, now)).collect();
            printer::table(
                &rows,
                Columns {
                    namespace: request.namespace_column,
                    wide: request.output == Some(Output::Wide),
                },
            )
        }
        Some(Output::Name) => printer::names(pods),
        Some(Output::Json) => printer::pretty_json(&json()?),
        Some(Output::Yaml) => printer::yaml(&json()?)?,
    })
}

/// kubectl's note on stderr when a listing is empty.
fn nothing_found(request: &GetRequest, pods: &[Pod], collector: &Collector) -> Option<String> {
    let Target::Pods { namespace } = &request.target else {
        return None;
    };
    if !pods.is_empty() || matches!(request.output, Some(Output::Json | Output::Yaml)) {
        return None;
    }
    let node = collector.node_name();
    Some(match namespace {
        Some(namespace) => format!("No resources found in {namespace} namespace on node {node}."),
        None => format!("No resources found on node {node}."),
    })
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
