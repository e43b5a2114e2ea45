//! The command line: `serve` runs the processor, `get` prints one pod. Every flag can also be
//! set from the environment, which is how the DaemonSet configures it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::allow_from::AllowFrom;
use crate::docker_context;
use crate::error::{Error, Result};
use crate::pod_ref::{PodRef, check_namespace};
use crate::runtime::RuntimeChoice;
use crate::settings::{self, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "pod-detail-collector",
    version,
    about = "Tells KubeDiag what a pod looks like on this node, straight from the container runtime.",
    long_about = "Tells KubeDiag what a pod looks like on this node, straight from the container runtime.\n\n\
        It finds the pod's sandbox and containers in the node's runtime (Docker, or containerd and \
        CRI-O over the CRI API the kubelet uses) by the kubelet's labels and \
        rebuilds a Kubernetes v1 Pod from them: containers, restart counts, exit codes, OOM kills, \
        resources, IPs, QoS. It never asks the API server, so it works when the control plane is \
        down, and it never changes anything on the node.\n\n\
        Log verbosity is set with RUST_LOG (default: info for serve, warn for get)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve KubeDiag's processors (POST /processor/podDetailCollector, podListCollector,
    /// containerCollector, runtimeInfoCollector, dockerInfoCollector), plus /healthz, /readyz and
    /// /metrics.
    Serve(ServeArgs),
    /// Show the node's pods as kubectl does: a table by default, or wide, json, yaml, name
    /// (same code path as the server).
    #[command(after_help = GET_EXAMPLES)]
    Get(GetArgs),
    /// Print a completion script for a shell (bash, zsh or fish) to stdout.
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
}

const GET_EXAMPLES: &str = "\
Examples:
  pod-detail-collector get pods                       every pod on this node
  pod-detail-collector get pods -n kube-system -o wide
  pod-detail-collector get pod etcd-node-1 -n kube-system -o yaml
  pod-detail-collector get kube-system/etcd-node-1 -o json

Exit codes: 0 done; 1 another failure (e.g. an unusable Docker context); 2 the command line
is wrong; 3 a pod named is not on this node; 4 the container runtime is down, too slow, or
answered an error.";

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  source <(pod-detail-collector completions bash)
  pod-detail-collector completions zsh > \"${fpath[1]}/_pod-detail-collector\"
  pod-detail-collector completions fish > ~/.config/fish/completions/pod-detail-collector.fish";

/// The completion script for a shell, from the command line's own definitions.
pub fn completion_script(shell: Shell) -> String {
    use clap::CommandFactory;
    const BIN: &str = "pod-detail-collector";
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(generator, &mut Cli::command(), BIN, &mut script);
    let script = String::from_utf8_lossy(&script).into_owned();
    if shell != Shell::Bash {
        return script;
    }
    // clap_complete's bash script spells a hyphenated program's subcommand states two ways
    // (`pod__detail__collector__subcmd__get` where it walks the words, `pod__subcmd__detail…`
    // in the arms), so nothing after a subcommand completes (clap-rs/clap#6421): spell the
    // arms as the walk does. A no-op once clap_complete is fixed.
    script.replace(&BIN.replace('-', "__subcmd__"), &BIN.replace('-', "__"))
}

/// The shells `completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. KubeDiag's agent uses 8090 on the same host network.
    #[arg(long, env = "PDC_LISTEN", default_value = settings::DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Largest request body accepted, in bytes. A KubeDiag context carries every earlier
    /// result and can reach ~1.5 MiB.
    #[arg(long, env = "PDC_BODY_LIMIT", default_value_t = settings::DEFAULT_BODY_LIMIT, value_name = "BYTES")]
    pub body_limit: usize,

    /// Who may call the processors besides this node (loopback and the node's own addresses,
    /// where the KubeDiag agent calls from): IP addresses and CIDRs separated by commas, or
    /// `any` for anyone who reaches the port. /healthz, /readyz and /metrics answer anyone.
    #[arg(
        long,
        env = "PDC_ALLOW_FROM",
        value_name = "CIDR,...|any",
        default_value = "",
        hide_default_value = true
    )]
    pub allow_from: AllowFrom,

    /// Require the token in this file (e.g. a mounted Secret; read again when it changes) as
    /// `?token=` in the path or as `Authorization: Bearer`.
    #[arg(long, env = "PDC_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Serve HTTPS with this PEM certificate chain (read again when it changes).
    #[arg(long, env = "PDC_TLS_CERT", value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, env = "PDC_TLS_KEY", value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Seconds a client has to send a request's headers, and then its body; an answer it
    /// does not read for as long ends the connection.
    #[arg(long, env = "PDC_READ_TIMEOUT", default_value_t = settings::DEFAULT_READ_TIMEOUT_SECS, value_name = "SECS")]
    pub read_timeout: u64,

    /// Most connections open at once; more wait until one closes.
    #[arg(long, env = "PDC_MAX_CONNECTIONS", default_value_t = settings::DEFAULT_MAX_CONNECTIONS, value_name = "N")]
    pub max_connections: usize,

    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// What to show, as kubectl says it: `pods` (every pod on the node), `pod NAME...`,
    /// `pod/NAME`, or NAMESPACE/NAME...
    #[arg(value_name = "pods|pod NAME|NAMESPACE/NAME", required = true, num_args = 1..)]
    pub what: Vec<String>,

    /// Only this namespace [default: every namespace for `pods`, `default` for `pod NAME`].
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Every namespace, as kubectl's -A (what `get pods` shows without -n).
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,

    /// Output format [default: kubectl's table].
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    pub output: Option<Output>,

    #[command(flatten)]
    pub node: NodeArgs,
}

/// `get -o`: the formats kubectl prints a pod in, besides its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// The table plus IP and NODE.
    Wide,
    /// The processor's Pod JSON (a v1 List of them for several pods), indented.
    Json,
    /// The same document as YAML.
    Yaml,
    /// pod/NAME, one a line.
    Name,
}

/// What `get` was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetRequest {
    pub target: Target,
    /// The table's format when `None`.
    pub output: Option<Output>,
    /// Whether the table shows a NAMESPACE column: when the pods are not all from one
    /// namespace the user named.
    pub namespace_column: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every pod on the node, or in one namespace.
    Pods { namespace: Option<String> },
    /// These pods, each of which must be on the node.
    Named(Vec<PodRef>),
}

/// The namespace `pod NAME` looks in without -n, as kubectl's.
pub const DEFAULT_NAMESPACE: &str = "default";

/// What kubectl calls a pod on its command line.
fn is_pod_resource(word: &str) -> bool {
    matches!(word, "pods" | "pod" | "po")
}

/// Where the runtime is and what the node is called: shared by `serve` and `get`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Read pods from this Docker daemon (dockershim and cri-dockerd nodes, Docker Desktop):
    /// unix:///path, /path, tcp://host:port or http://host:port.
    /// [default: the Docker context the docker CLI would use (DOCKER_CONTEXT, else
    /// currentContext of ~/.docker/config.json), else the node's runtime, found from the
    /// well-known sockets]
    #[arg(long, env = "DOCKER_HOST", conflicts_with = "runtime_endpoint")]
    pub docker_host: Option<String>,

    /// Read pods from this CRI runtime socket (containerd, CRI-O), as crictl does:
    /// unix:///path or /path. Without it and without --docker-host, the collector looks for
    /// /var/run/cri-dockerd.sock (read through Docker), /run/containerd/containerd.sock,
    /// /var/run/crio/crio.sock, then /var/run/docker.sock, and reads the first that answers.
    #[arg(long, env = "CONTAINER_RUNTIME_ENDPOINT", value_name = "ENDPOINT")]
    pub runtime_endpoint: Option<String>,

    /// Node name written as spec.nodeName [default: this host's name].
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,

    /// The node's IP, written as status.hostIP and as the podIP of host-network pods.
    #[arg(long, env = "HOST_IP")]
    pub host_ip: Option<IpAddr>,

    /// Seconds any single call to the runtime may take.
    #[arg(long, env = "PDC_RUNTIME_TIMEOUT", default_value_t = settings::DEFAULT_RUNTIME_TIMEOUT_SECS, value_name = "SECS")]
    pub runtime_timeout: u64,

    /// Most calls to the runtime in flight at once, over all requests, so that a storm
    /// of diagnoses cannot overload the runtime.
    #[arg(long, env = "PDC_RUNTIME_CONCURRENCY", default_value_t = settings::DEFAULT_RUNTIME_CONCURRENCY, value_name = "CALLS")]
    pub runtime_concurrency: usize,

    /// Keep which containers belong to which pod from Docker's event log, and the records of
    /// exited containers until an event names them, so that a request needs no container list
    /// call and inspects only running and created containers (much faster on nodes with many
    /// containers). The event window is read by the daemon's own clock; whenever the events
    /// cannot be followed, requests use the list. `--event-index=false` always lists.
    /// `get` never builds it.
    #[arg(
        long,
        env = "PDC_EVENT_INDEX",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value_t = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub event_index: bool,

    /// Show environment variable values and the values of credential-looking command-line
    /// flags (--password=…, --token …, --*-key, URL passwords). They are redacted by default
    /// because secrets are often passed that way.
    #[arg(long, env = "PDC_REVEAL_ENV")]
    pub reveal_env: bool,

    /// Where the host's /proc is mounted (read for pod IPs under CNI).
    #[arg(long, env = "PDC_HOST_PROC", default_value = "/proc")]
    pub host_proc: PathBuf,

    /// The kubelet's root directory (its layout names the pod's volumes).
    #[arg(long, env = "PDC_KUBELET_ROOT", default_value = "/var/lib/kubelet")]
    pub kubelet_root: PathBuf,

    /// The kubelet's static pod manifest directory.
    #[arg(
        long,
        env = "PDC_MANIFEST_DIR",
        default_value = "/etc/kubernetes/manifests"
    )]
    pub manifest_dir: PathBuf,

    /// The kubelet's container log directory: a failed container whose
    /// terminationMessagePolicy is FallbackToLogsOnError shows its log's tail from here.
    #[arg(long, env = "PDC_POD_LOGS_DIR", default_value = "/var/log/pods")]
    pub pod_logs_dir: PathBuf,
}

impl NodeArgs {
    /// The settings; with neither --docker-host nor --runtime-endpoint, the Docker context
    /// the docker CLI would use, if any, is read first (an unusable one is an error).
    pub fn settings(&self) -> Result<Settings> {
        Ok(Settings {
            runtime: match (&self.runtime_endpoint, &self.docker_host) {
                (Some(endpoint), _) => RuntimeChoice::Cri(endpoint.clone()),
                (None, Some(host)) => RuntimeChoice::Docker(host.clone()),
                (None, None) => {
                    match docker_context::resolve(&docker_context::Env::from_process())? {
                        Some(context) => RuntimeChoice::DockerContext(context),
                        None => RuntimeChoice::well_known(),
                    }
                }
            },
            node_name: self.node_name.clone().unwrap_or_else(host_name),
            host_ip: self.host_ip,
            runtime_timeout: Duration::from_secs(self.runtime_timeout.max(1)),
            runtime_concurrency: self.runtime_concurrency.max(1),
            event_index: self.event_index,
            reveal_env: self.reveal_env,
            host_proc: self.host_proc.clone(),
            kubelet_root: self.kubelet_root.clone(),
            manifest_dir: self.manifest_dir.clone(),
            pod_logs_dir: self.pod_logs_dir.clone(),
            ..Settings::default()
        })
    }
}

impl ServeArgs {
    pub fn settings(&self) -> Result<Settings> {
        Ok(Settings {
            listen: self.listen,
            body_limit: self.body_limit,
            allow_from: self.allow_from.clone(),
            token_file: self.token_file.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            read_timeout: Duration::from_secs(self.read_timeout.max(1)),
            max_connections: self.max_connections.max(1),
            ..self.node.settings()?
        })
    }
}

impl GetArgs {
    /// The request, checked: names are valid Kubernetes names, and the words say one thing.
    /// Every error here is the command line's (exit code 2).
    pub fn request(&self) -> Result<GetRequest> {
        let usage = |text: String| Error::BadRequest(text);
        if let Some(namespace) = &self.namespace {
            check_namespace("namespace", namespace)?;
        }
        let (first, rest) = self
            .what
            .split_first()
            .ok_or_else(|| usage("say what to get: pods, pod NAME or NAMESPACE/NAME".into()))?;
        let target = if is_pod_resource(first) && rest.is_empty() {
            Target::Pods {
                namespace: self.namespace.clone(),
            }
        } else {
            // `pod NAME...` names pods in -n's namespace; every other word is `pod/NAME` or
            // NAMESPACE/NAME.
            let names = if is_pod_resource(first) {
                rest
            } else {
                &self.what[..]
            };
            let in_namespace = |name: &str| {
                if self.all_namespaces {
                    return Err(usage(format!(
                        "pod {name:?} cannot be looked up by name across all namespaces: \
                         give -n NAMESPACE or NAMESPACE/NAME instead of -A"
                    )));
                }
                let namespace = self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
                PodRef::new(("namespace", namespace), ("name", name))
            };
            let mut pods = Vec::new();
            for word in names {
                let pod = match word.split_once('/') {
                    None if is_pod_resource(first) => in_namespace(word)?,
                    None => {
                        return Err(usage(format!(
                            "{word:?} is not something to get: say pods, pod NAME or \
                             NAMESPACE/NAME (this collector shows pods only)"
                        )));
                    }
                    Some((kind, name)) if is_pod_resource(kind) => in_namespace(name)?,
                    Some(_) => {
                        let pod = PodRef::parse(word)?;
                        if let Some(namespace) = &self.namespace
                            && *namespace != pod.namespace
                        {
                            return Err(usage(format!(
                                "{word:?} is in namespace {:?}, not in -n {namespace:?}",
                                pod.namespace
                            )));
                        }
                        pod
                    }
                };
                if !pods.contains(&pod) {
                    pods.push(pod);
                }
            }
            Target::Named(pods)
        };
        let namespace_column = match &target {
            Target::Pods { namespace } => namespace.is_none(),
            // NAMESPACE/NAME: the user named the namespaces; show them.
            Target::Named(_) => self.what.iter().any(|word| {
                word.split_once('/')
                    .is_some_and(|(prefix, _)| !is_pod_resource(prefix))
            }),
        };
        Ok(GetRequest {
            target,
            output: self.output,
            namespace_column,
        })
    }
}

/// How `get` ends, for scripts: each code means one thing.
pub mod exit {
    /// Another failure: e.g. an unusable Docker context or --docker-host, or output that
    /// could not be written.
    pub const FAILURE: u8 = 1;
    /// The command line is wrong (clap's own errors, a name that is not a Kubernetes name).
    pub const USAGE: u8 = 2;
    /// A pod named is not on this node (the others are still printed).
    pub const NOT_FOUND: u8 = 3;
    /// The container runtime could not be reached, did not answer in time, or answered an
    /// error.
    pub const RUNTIME_DOWN: u8 = 4;
}

/// The exit code that tells this error apart.
pub fn exit_code(err: &Error) -> u8 {
    match err {
        Error::PodNotFound { .. } => exit::NOT_FOUND,
        Error::Runtime { .. } => exit::RUNTIME_DOWN,
        Error::BadRequest(_) => exit::USAGE,
        _ => exit::FAILURE,
    }
}

/// The kernel's host name, which is the kubelet's default node name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command line as clap parses it, without the environment: the tests' own (with
    /// DOCKER_HOST and CONTAINER_RUNTIME_ENDPOINT from scripts/test) must not count.
    fn parse(argv: &[&str]) -> Result<Cli, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        fn without_env(command: clap::Command) -> clap::Command {
            let command = command.mut_args(|arg| arg.env(None));
            let names: Vec<String> = command
                .get_subcommands()
                .map(|sub| sub.get_name().to_string())
                .collect();
            names.iter().fold(command, |command, name| {
                command.mut_subcommand(name, without_env)
            })
        }
        let matches = without_env(Cli::command()).try_get_matches_from(argv)?;
        Cli::from_arg_matches(&matches)
    }

    fn request(args: &[&str]) -> Result<GetRequest> {
        let mut argv = vec!["pod-detail-collector", "get"];
        argv.extend_from_slice(args);
        let cli = parse(&argv).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let Command::Get(get) = cli.command else {
            panic!("not get")
        };
        get.request()
    }

    fn pods(text: &[&str]) -> Vec<PodRef> {
        text.iter().map(|t| PodRef::parse(t).unwrap()).collect()
    }

    fn usage_error(args: &[&str]) -> String {
        match request(args) {
            Err(err @ Error::BadRequest(_)) => {
                assert_eq!(exit_code(&err), exit::USAGE);
                err.to_string()
            }
            other => panic!("{args:?}: expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn get_pods_lists_the_node_or_one_namespace() {
        for args in [&["pods"][..], &["pod"], &["po"], &["pods", "-A"]] {
            assert_eq!(
                request(args).unwrap(),
                GetRequest {
                    target: Target::Pods { namespace: None },
                    output: None,
                    namespace_column: true
                },
                "{args:?}"
            );
        }
        assert_eq!(
            request(&["pods", "-n", "kube-system", "-o", "wide"]).unwrap(),
            GetRequest {
                target: Target::Pods {
                    namespace: Some("kube-system".into())
                },
                output: Some(Output::Wide),
                namespace_column: false
            }
        );
        for (flag, output) in [
            ("-ojson", Output::Json),
            ("--output=yaml", Output::Yaml),
            ("-o=name", Output::Name),
        ] {
            assert_eq!(request(&["pods", flag]).unwrap().output, Some(output));
        }
    }

    #[test]
    fn pods_are_named_as_kubectl_names_them_or_as_namespace_slash_name() {
        let named = |args: &[&str]| request(args).unwrap();
        assert_eq!(
            named(&["pod", "etcd-node-1", "-n", "kube-system"]),
            GetRequest {
                target: Target::Named(pods(&["kube-system/etcd-node-1"])),
                output: None,
                namespace_column: false
            }
        );
        // Without -n, in `default`, as kubectl.
        assert_eq!(
            named(&["pods", "web-1", "web-2"]).target,
            Target::Named(pods(&["default/web-1", "default/web-2"]))
        );
        assert_eq!(
            named(&["pod/web-1", "-n", "shop"]).target,
            Target::Named(pods(&["shop/web-1"]))
        );
        let both = named(&["kube-system/etcd-node-1", "shop/web-1", "shop/web-1"]);
        assert_eq!(
            both.target,
            Target::Named(pods(&["kube-system/etcd-node-1", "shop/web-1"]))
        );
        assert!(both.namespace_column);
        assert!(
            named(&["shop/web-1", "-n", "shop"]).namespace_column,
            "NAMESPACE/NAME shows the namespace"
        );
    }

    #[test]
    fn contradictions_and_bad_names_are_usage_errors() {
        assert!(usage_error(&["pod", "web-1", "-A"]).contains("across all namespaces"));
        assert!(usage_error(&["nodes"]).contains("pods only"));
        assert!(usage_error(&["shop/web-1", "-n", "kube-system"]).contains("not in -n"));
        assert!(usage_error(&["pod", "Web_1"]).contains("not a valid Kubernetes name"));
        assert!(usage_error(&["pods", "-n", "Shop"]).contains("not a valid Kubernetes name"));
        assert!(usage_error(&["shop/"]).contains("not a valid Kubernetes name"));
        // What clap refuses exits 2 as well.
        for args in [
            &["get"][..],
            &["get", "pods", "-o", "table"],
            &["get", "pods", "-n", "a", "-A"],
        ] {
            let mut argv = vec!["pod-detail-collector"];
            argv.extend_from_slice(args);
            let err = parse(&argv).expect_err("a usage error");
            assert_eq!(err.exit_code(), i32::from(exit::USAGE), "{args:?}");
        }
    }

    #[test]
    fn exit_codes_tell_failures_apart() {
        let pod = PodRef::parse("shop/web-1").unwrap();
        let not_found = Error::PodNotFound {
            pod: pod.clone(),
            node: "node-1".into(),
        };
        let down = Error::runtime(
            "pod shop/web-1",
            crate::RuntimeFailure::Unreachable {
                runtime: "docker daemon at unix:///x".into(),
                detail: "no socket".into(),
            },
        );
        let codes = [
            exit_code(&not_found),
            exit_code(&down),
            exit_code(&Error::BadRequest("x".into())),
            exit_code(&Error::Config("x".into())),
        ];
        assert_eq!(
            codes,
            [
                exit::NOT_FOUND,
                exit::RUNTIME_DOWN,
                exit::USAGE,
                exit::FAILURE
            ]
        );
    }
}
