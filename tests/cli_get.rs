//! The command line as a kubectl user meets it: the real binary (`get`, `completions`) against
//! the real daemons, each run with an environment of its own (`env_clear`: no DOCKER_HOST,
//! CONTAINER_RUNTIME_ENDPOINT, RUST_LOG or HOME from the test process unless given).
//!
//! - every output format of `get` on a Docker node laid out as the kubelet does (table, wide,
//!   json, yaml read back, name), `-n` and `-A`, kubectl's STATUS and RESTARTS, and the JSON
//!   byte for byte what the processor answers;
//! - quiet runs (no log line unless RUST_LOG asks), one-sentence errors and their exit codes;
//! - a Docker context naming the test daemon with DOCKER_HOST unset;
//! - `get pods` on a CRI node through CONTAINER_RUNTIME_ENDPOINT;
//! - shell completions.
//!
//! Needs the daemons and images of `scripts/test`.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pod_detail_collector::cli::exit;
use serde_json::{Value, json};
use support::cri::{self, CriNode};
use support::service::{POD_DETAIL_KEY, POD_LIST_KEY, POD_LIST_PATH, missing_socket};
use support::{Collector, Container, HOST_IP, Instance, NODE_NAME, Node, Pod, util};

const BINARY: &str = env!("CARGO_BIN_EXE_pod-detail-collector");

/// What one run of the binary gave.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "{self:#?}");
        self
    }
    /// Exits with this code and says why in one line on stderr.
    fn fails_with(self, code: u8) -> String {
        assert_eq!(self.code, i32::from(code), "{self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("pod-detail-collector: "),
            "one sentence on stderr: {self:#?}"
        );
        self.stderr
    }
}

/// Runs the binary with exactly this environment.
async fn run(env: &[(&str, String)], args: &[&str]) -> Run {
    let out = tokio::process::Command::new(BINARY)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(args)
        .output()
        .await
        .expect("run pod-detail-collector");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// An empty home directory (no `~/.docker`) under the test's directory.
fn home_in(dir: &Path) -> PathBuf {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).expect("home dir");
    home
}

/// What the in-process collector of [`support::service::settings_for`] is told, as the
/// environment of the binary, minus where the runtime is.
fn node_env(dir: &Path, kubelet_root: &Path) -> Vec<(&'static str, String)> {
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).expect("manifest dir");
    vec![
        ("HOME", home_in(dir).display().to_string()),
        ("NODE_NAME", NODE_NAME.to_string()),
        ("HOST_IP", HOST_IP.to_string()),
        ("PDC_KUBELET_ROOT", kubelet_root.display().to_string()),
        ("PDC_MANIFEST_DIR", manifests.display().to_string()),
    ]
}

/// The environment that points the binary at the test's Docker daemon.
fn docker_env(node: &Node) -> Vec<(&'static str, String)> {
    let mut env = node_env(&node.dir, &node.kubelet_root);
    env.push(("DOCKER_HOST", util::docker_host()));
    env
}

/// A kubectl table as rows of `column -> cell`, cut at the header's column starts (cells
/// such as `5 (3m ago)` hold spaces).
fn parse_table(text: &str) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap_or_else(|| panic!("no header in {text:?}"));
    let mut starts = Vec::new();
    let mut prev = ' ';
    for (i, c) in header.char_indices() {
        if c != ' ' && prev == ' ' {
            starts.push(i);
        }
        prev = c;
    }
    let names: Vec<String> = header.split_whitespace().map(str::to_string).collect();
    assert_eq!(names.len(), starts.len(), "{header:?}");
    let rows = lines
        .map(|line| {
            names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let end = starts
                        .get(i + 1)
                        .copied()
                        .unwrap_or(line.len())
                        .min(line.len());
                    let cell = line.get(starts[i]..end).unwrap_or_default();
                    (name.clone(), cell.trim().to_string())
                })
                .collect()
        })
        .collect();
    (names, rows)
}

fn columns(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// The rows by pod name.
fn by_name(rows: Vec<BTreeMap<String, String>>) -> BTreeMap<String, BTreeMap<String, String>> {
    rows.into_iter().map(|r| (r["NAME"].clone(), r)).collect()
}

/// The JSON text without the whitespace outside strings.
fn minified(text: &str) -> String {
    let (mut out, mut in_string, mut escaped) = (String::new(), false, false);
    for c in text.chars() {
        if in_string {
            escaped = !escaped && c == '\\';
            in_string = escaped || c != '"';
            out.push(c);
        } else if !c.is_whitespace() {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// The Pod JSON text the detail processor answers, exactly.
async fn processor_pod(collector: &Collector, namespace: &str, name: &str) -> String {
    let reply = collector.ask(namespace, name).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()[POD_DETAIL_KEY]
        .as_str()
        .unwrap_or_else(|| panic!("no {POD_DETAIL_KEY}: {}", reply.body))
        .to_string()
}

/// The pods the pod list processor answers for a namespace.
async fn processor_list(collector: &Collector, namespace: &str) -> Value {
    collector
        .post_json_to(POD_LIST_PATH, &json!({"pod.namespace": namespace}))
        .await
        .expect_answer(POD_LIST_KEY)
}

/// `RESTARTS` of a pod that restarted `count` times, the last a few seconds ago.
fn assert_restarts_recently(cell: &str, count: u32) {
    let ago = cell
        .strip_prefix(&format!("{count} ("))
        .and_then(|rest| rest.strip_suffix("s ago)"))
        .unwrap_or_else(|| panic!("RESTARTS {cell:?}: expected \"{count} (Ns ago)\""));
    assert!(ago.parse::<u32>().is_ok_and(|s| s < 600), "{cell:?}");
}

#[tokio::test]
async fn get_prints_a_docker_node_as_kubectl_does_in_every_format() {
    let node = Node::new().await;
    let ns = node.ns("cli");
    let other_ns = node.ns("cli-other");
    let app = || Container::new("app");
    let web = node.run(
        Pod::new(&ns, "web").pod_ip("198.51.100.77/24").container(
            app()
                .first_attempt(4)
                .instance(Instance::Exit(1))
                .instance(Instance::Running),
        ),
    );
    let job = node.run(
        Pod::new(&ns, "job")
            .container(app().instance(Instance::Exit(0)))
            .finished(),
    );
    let crash = node.run(
        Pod::new(&ns, "crash")
            .container(app().instance(Instance::Exit(1)))
            .finished(),
    );
    // A limit large enough that the kill comes after Docker watches for it (an OOM within
    // milliseconds of the start can go unflagged on a busy host).
    let oom = node.run(
        Pod::new(&ns, "oom").container(
            app()
                .memory_limit(256 * 1024 * 1024)
                .instance(Instance::OomKilled),
        ),
    );
    let creating = node.run(Pod::new(&ns, "creating").container(app().instance(Instance::Created)));
    // Kubelets that write the container type let init containers be told apart for sure.
    let init = node.run(
        Pod::new(&ns, "init")
            .container(
                Container::new("migrate")
                    .container_type("init")
                    .instance(Instance::Exit(0)),
            )
            .container(
                Container::new("wait-for-db")
                    .container_type("init")
                    .instance(Instance::Running),
            ),
    );
    // A container the kubelet created once the pod was being deleted.
    let bye = node.run(
        Pod::new(&ns, "bye").container(
            app()
                .raw_annotation("io.kubernetes.pod.deletionGracePeriod", "30")
                .instance(Instance::Running),
        ),
    );
    let other = node.run(Pod::new(&other_ns, "elsewhere").container(app()));
    tokio::join!(web, job, crash, oom, creating, init, bye, other);

    let env = docker_env(&node);
    let collector = Collector::start(&node).await;

    // The table: kubectl's columns and what kubectl would say of each pod.
    let table = run(&env, &["get", "pods", "-n", &ns]).await.ok();
    assert_eq!(table.stderr, "", "a one-shot logs nothing unless asked");
    eprintln!("get pods -n {ns}:\n{}", table.stdout);
    let (header, rows) = parse_table(&table.stdout);
    assert_eq!(
        header,
        columns(&["NAME", "READY", "STATUS", "RESTARTS", "AGE"])
    );
    let rows = by_name(rows);
    assert_eq!(
        rows.keys().collect::<Vec<_>>(),
        ["bye", "crash", "creating", "init", "job", "oom", "web"],
        "{}",
        table.stdout
    );
    let expected = [
        ("web", "1/1", "Running"),
        ("job", "0/1", "Completed"),
        ("crash", "0/1", "Error"),
        ("oom", "0/1", "OOMKilled"),
        ("creating", "0/1", "ContainerCreating"),
        ("init", "0/0", "Init:1/2"),
        ("bye", "1/1", "Terminating"),
    ];
    for (name, ready, status) in expected {
        let row = &rows[name];
        assert_eq!(
            (row["READY"].as_str(), row["STATUS"].as_str()),
            (ready, status),
            "{name}: {}",
            table.stdout
        );
        if name != "web" {
            assert_eq!(row["RESTARTS"], "0", "{name}");
        }
        assert!(row["AGE"].ends_with('s'), "{name}: AGE {:?}", row["AGE"]);
    }
    assert_restarts_recently(&rows["web"]["RESTARTS"], 5);

    // Wide: the pod's IP and the node.
    let wide = run(&env, &["get", "pods", "-n", &ns, "-o", "wide"])
        .await
        .ok();
    let (header, rows) = parse_table(&wide.stdout);
    assert_eq!(
        header,
        columns(&["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"])
    );
    let rows = by_name(rows);
    assert_eq!(rows["web"]["IP"], "198.51.100.77");
    assert_eq!(rows["job"]["IP"], "<none>");
    assert!(
        rows.values().all(|r| r["NODE"] == NODE_NAME),
        "{}",
        wide.stdout
    );

    // JSON: byte for byte the processor's Pod, indented.
    let web_json = processor_pod(&collector, &ns, "web").await;
    let one = run(&env, &["get", &format!("{ns}/web"), "-o", "json"])
        .await
        .ok();
    assert_eq!(minified(&one.stdout), web_json);
    assert!(
        one.stdout.starts_with("{\n    \"apiVersion\": \"v1\",\n"),
        "{}",
        one.stdout
    );
    let same = run(&env, &["get", "pod", "web", "-n", &ns, "-o", "json"])
        .await
        .ok();
    assert_eq!(same.stdout, one.stdout);

    // A listing is a v1 List holding exactly what the pod list processor answers.
    let list = run(&env, &["get", "pods", "-n", &ns, "-o", "json"])
        .await
        .ok();
    let list_value: Value = serde_json::from_str(&list.stdout).expect("JSON");
    assert_eq!(list_value["kind"], "List");
    assert_eq!(list_value["apiVersion"], "v1");
    assert_eq!(list_value["items"], processor_list(&collector, &ns).await);
    assert!(minified(&list.stdout).contains(&web_json));

    // YAML: read back, the same document as the JSON.
    let yaml = run(&env, &["get", &format!("{ns}/web"), "-o", "yaml"])
        .await
        .ok();
    let from_yaml: Value = serde_saphyr::from_str(&yaml.stdout).expect("YAML");
    assert_eq!(from_yaml, serde_json::from_str::<Value>(&web_json).unwrap());
    let yaml_list = run(&env, &["get", "pods", "-n", &ns, "-o", "yaml"])
        .await
        .ok();
    let from_yaml: Value = serde_saphyr::from_str(&yaml_list.stdout).expect("YAML");
    assert_eq!(from_yaml, list_value);

    // Names.
    let names = run(&env, &["get", "pods", "-n", &ns, "-o", "name"])
        .await
        .ok();
    assert_eq!(
        names.stdout,
        "pod/bye\npod/crash\npod/creating\npod/init\npod/job\npod/oom\npod/web\n"
    );

    // -n keeps to one namespace; -A (and `get pods` alone) shows every one, with NAMESPACE.
    let other = run(&env, &["get", "po", "-n", &other_ns]).await.ok();
    let (_, rows) = parse_table(&other.stdout);
    assert_eq!(by_name(rows).keys().collect::<Vec<_>>(), ["elsewhere"]);
    for args in [&["get", "pods", "-A"][..], &["get", "pods"]] {
        let all = run(&env, args).await.ok();
        let (header, rows) = parse_table(&all.stdout);
        assert_eq!(
            header,
            columns(&["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]),
            "{args:?}"
        );
        let ours: Vec<(String, String, String)> = rows
            .iter()
            .filter(|r| r["NAMESPACE"] == ns || r["NAMESPACE"] == other_ns)
            .map(|r| {
                (
                    r["NAMESPACE"].clone(),
                    r["NAME"].clone(),
                    r["STATUS"].clone(),
                )
            })
            .collect();
        assert_eq!(ours.len(), 8, "{args:?}: {}", all.stdout);
        assert!(ours.contains(&(other_ns.clone(), "elsewhere".into(), "Running".into())));
        assert!(ours.contains(&(ns.clone(), "init".into(), "Init:1/2".into())));
    }

    // One pod by name: kubectl's row, no NAMESPACE column; NAMESPACE/NAME shows it.
    let named = run(&env, &["get", "pod", "job", "-n", &ns]).await.ok();
    let (header, rows) = parse_table(&named.stdout);
    assert_eq!(header[0], "NAME");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["STATUS"], "Completed");
    let named = run(
        &env,
        &[
            "get",
            &format!("{ns}/job"),
            &format!("{other_ns}/elsewhere"),
        ],
    )
    .await
    .ok();
    let (header, rows) = parse_table(&named.stdout);
    assert_eq!(header[0], "NAMESPACE");
    assert_eq!(rows.len(), 2);

    // RUST_LOG still turns the log on.
    let mut verbose = env.clone();
    verbose.push(("RUST_LOG", "info".into()));
    let logged = run(&verbose, &["get", "pods", "-n", &ns, "-o", "name"])
        .await
        .ok();
    assert!(logged.stderr.contains("INFO"), "{logged:#?}");
    assert_eq!(logged.stdout, names.stdout);
}

#[tokio::test]
async fn errors_are_one_sentence_with_an_exit_code_per_cause() {
    let node = Node::new().await;
    let ns = node.ns("cli-exit");
    node.run(Pod::new(&ns, "web").container(Container::new("app")))
        .await;
    let env = docker_env(&node);

    // Not on this node: exit 3, naming the pod and the node.
    let text = run(&env, &["get", "pod", "missing", "-n", &ns])
        .await
        .fails_with(exit::NOT_FOUND);
    assert!(
        text.contains(&format!(
            "pod {ns}/missing has no container on node {NODE_NAME}"
        )),
        "{text}"
    );
    // The pods found are still printed.
    let some = run(
        &env,
        &["get", &format!("{ns}/web"), &format!("{ns}/missing")],
    )
    .await;
    assert_eq!(some.code, i32::from(exit::NOT_FOUND), "{some:#?}");
    let (_, rows) = parse_table(&some.stdout);
    assert_eq!(rows.len(), 1, "{some:#?}");
    assert_eq!(rows[0]["NAME"], "web");
    // Without -n, `pod NAME` looks in `default`, and says so.
    let text = run(&env, &["get", "pod", "web"])
        .await
        .fails_with(exit::NOT_FOUND);
    assert!(
        text.contains("pod default/web") && text.contains("without -n"),
        "{text}"
    );

    // The runtime down: exit 4, naming the daemon.
    let missing = missing_socket(&node.dir);
    for args in [
        vec!["get", "pods", "--docker-host", missing.as_str()],
        vec![
            "get",
            "pod",
            "web",
            "-n",
            &ns,
            "--docker-host",
            missing.as_str(),
        ],
    ] {
        let text = run(&env, &args).await.fails_with(exit::RUNTIME_DOWN);
        assert!(
            text.contains(&format!("docker daemon at {missing}")),
            "{text}"
        );
    }

    // The command line wrong: exit 2.
    let text = run(&env, &["get", "pod", "Web_1"])
        .await
        .fails_with(exit::USAGE);
    assert!(text.contains("not a valid Kubernetes name"), "{text}");
    let wrong = run(&env, &["get", "pods", "-o", "table"]).await;
    assert_eq!(wrong.code, i32::from(exit::USAGE), "{wrong:#?}");

    // An empty listing is no error: kubectl's note on stderr.
    let empty = node.ns("cli-empty");
    let none = run(&env, &["get", "pods", "-n", &empty]).await.ok();
    assert_eq!(none.stdout, "");
    assert_eq!(
        none.stderr.trim(),
        format!("No resources found in {empty} namespace on node {NODE_NAME}.")
    );
    let none = run(&env, &["get", "pods", "-n", &empty, "-o", "json"])
        .await
        .ok();
    let list: Value = serde_json::from_str(&none.stdout).unwrap();
    assert_eq!(list["items"], json!([]));
}

/// A Docker context `name` as `docker context create NAME --docker host=HOST` writes it,
/// under `home`.
fn write_context(home: &Path, name: &str, digest: &str, host: &str) {
    let dir = home.join(".docker/contexts/meta").join(digest);
    std::fs::create_dir_all(&dir).expect("context dir");
    let meta = json!({
        "Name": name,
        "Metadata": {"Description": "pod-detail-collector test"},
        "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": false}}
    });
    std::fs::write(dir.join("meta.json"), meta.to_string()).expect("meta.json");
}

fn set_current_context(home: &Path, name: &str) {
    let config = json!({"auths": {}, "currentContext": name});
    std::fs::write(home.join(".docker/config.json"), config.to_string()).expect("config.json");
}

// printf %s NAME | sha256sum: the directory the docker CLI keeps a context in.
const PDC_TEST_DIGEST: &str = "cd61f3a3490bee965164ccdb007139061e1737ef2c6170a92ce5ef9598ac03cb";
const PDC_DOWN_DIGEST: &str = "74cb897f04f41bf39e49c78bf9e112b91ebff549e038de2304b1b7ec0a605434";

#[tokio::test]
async fn a_docker_context_names_the_daemon_when_docker_host_is_unset() {
    let node = Node::new().await;
    let ns = node.ns("cli-context");
    node.run(Pod::new(&ns, "web").container(Container::new("app")))
        .await;
    let collector = Collector::start(&node).await;
    let web_json = processor_pod(&collector, &ns, "web").await;

    // Nothing of DOCKER_HOST or CONTAINER_RUNTIME_ENDPOINT: only HOME and the node's files.
    let env = node_env(&node.dir, &node.kubelet_root);
    let home = PathBuf::from(&env.iter().find(|(k, _)| *k == "HOME").unwrap().1);
    let missing = missing_socket(&node.dir);
    write_context(&home, "pdc-test", PDC_TEST_DIGEST, &util::docker_host());
    write_context(&home, "pdc-down", PDC_DOWN_DIGEST, &missing);

    // The current context of ~/.docker/config.json.
    set_current_context(&home, "pdc-test");
    let got = run(&env, &["get", &format!("{ns}/web"), "-o", "json"])
        .await
        .ok();
    assert_eq!(minified(&got.stdout), web_json);
    assert_eq!(got.stderr, "");

    // DOCKER_CONTEXT over the config file, as the docker CLI.
    set_current_context(&home, "pdc-down");
    let mut chosen = env.clone();
    chosen.push(("DOCKER_CONTEXT", "pdc-test".into()));
    let got = run(&chosen, &["get", &format!("{ns}/web"), "-o", "json"])
        .await
        .ok();
    assert_eq!(minified(&got.stdout), web_json);

    // A context whose daemon is down: exit 4, saying which daemon of which context.
    let text = run(&env, &["get", "pods", "-n", &ns])
        .await
        .fails_with(exit::RUNTIME_DOWN);
    assert!(
        text.contains(&format!(
            "docker daemon at {missing} (Docker context \"pdc-down\")"
        )),
        "{text}"
    );

    // DOCKER_HOST wins over any context.
    let mut with_host = env.clone();
    with_host.push(("DOCKER_HOST", util::docker_host()));
    let got = run(&with_host, &["get", &format!("{ns}/web"), "-o", "json"])
        .await
        .ok();
    assert_eq!(minified(&got.stdout), web_json);

    // A context that does not exist is an error naming it (exit 1), as for the docker CLI.
    let mut unknown = env.clone();
    unknown.push(("DOCKER_CONTEXT", "pdc-missing".into()));
    let text = run(&unknown, &["get", "pods"])
        .await
        .fails_with(exit::FAILURE);
    assert!(
        text.contains("Docker context \"pdc-missing\" (from DOCKER_CONTEXT)"),
        "{text}"
    );
}

#[tokio::test]
async fn get_pods_reads_a_cri_node_through_container_runtime_endpoint() {
    let Some(node) = CriNode::new().await else {
        return;
    };
    let ns = node.ns("cli-cri");
    let web = node.run(
        Pod::new(&ns, "web").container(
            Container::new("app")
                .first_attempt(2)
                .instance(Instance::Exit(1))
                .instance(Instance::Running),
        ),
    );
    let job = node.run(
        Pod::new(&ns, "job")
            .container(Container::new("app").instance(Instance::Exit(0)))
            .finished(),
    );
    tokio::join!(web, job);

    let mut env = node_env(&node.dir, &node.kubelet_root);
    env.push(("CONTAINER_RUNTIME_ENDPOINT", node.endpoint.clone()));
    let table = run(&env, &["get", "pods", "-n", &ns, "-o", "wide"])
        .await
        .ok();
    assert_eq!(table.stderr, "");
    eprintln!("get pods -n {ns} -o wide (CRI):\n{}", table.stdout);
    let (header, rows) = parse_table(&table.stdout);
    assert_eq!(
        header,
        columns(&["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"])
    );
    let rows = by_name(rows);
    assert_eq!(rows.keys().collect::<Vec<_>>(), ["job", "web"]);
    assert_eq!(
        (
            rows["web"]["READY"].as_str(),
            rows["web"]["STATUS"].as_str()
        ),
        ("1/1", "Running")
    );
    assert_restarts_recently(&rows["web"]["RESTARTS"], 3);
    assert_eq!(
        (
            rows["job"]["READY"].as_str(),
            rows["job"]["STATUS"].as_str()
        ),
        ("0/1", "Completed")
    );
    if cri::cri_netns().is_some() {
        assert!(
            rows["web"]["IP"].starts_with("198.51.100."),
            "{}",
            table.stdout
        );
    }

    // The same pods as the pod list processor reading the same containerd.
    let collector = Collector::start_with(pod_detail_collector::Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        runtime: pod_detail_collector::runtime::RuntimeChoice::Cri(node.endpoint.clone()),
        node_name: NODE_NAME.to_string(),
        host_ip: Some(HOST_IP.parse().unwrap()),
        kubelet_root: node.kubelet_root.clone(),
        manifest_dir: node.dir.join("manifests"),
        ..pod_detail_collector::Settings::default()
    })
    .await;
    let list = run(&env, &["get", "pods", "-n", &ns, "-o", "json"])
        .await
        .ok();
    let list: Value = serde_json::from_str(&list.stdout).expect("JSON");
    assert_eq!(list["items"], processor_list(&collector, &ns).await);

    // The CRI runtime down: exit 4, naming the endpoint.
    let mut down = node_env(&node.dir, &node.kubelet_root);
    let missing = format!(
        "unix://{}",
        node.dir.join("no-such-containerd.sock").display()
    );
    down.push(("CONTAINER_RUNTIME_ENDPOINT", missing.clone()));
    let text = run(&down, &["get", "pods"])
        .await
        .fails_with(exit::RUNTIME_DOWN);
    assert!(text.contains(&missing), "{text}");
}

#[tokio::test]
async fn completions_come_for_bash_zsh_and_fish() {
    let dir = std::env::temp_dir().join(format!("pdc-completions-{}", util::random_hex(8)));
    let env = vec![("HOME", home_in(&dir).display().to_string())];
    let bash = run(&env, &["completions", "bash"]).await.ok();
    assert_eq!(bash.stderr, "");
    // Loaded into bash, it completes the subcommands, get's flags and -o's values.
    let script = dir.join("pod-detail-collector.bash");
    std::fs::write(&script, &bash.stdout).expect("write the script");
    let complete = |words: &str| {
        let program = format!(
            r#"source {script}
fn=$(complete -p pod-detail-collector | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"; COMP_POINT=${{#COMP_LINE}}
"$fn" pod-detail-collector "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
            script = script.display()
        );
        let out = std::process::Command::new("bash")
            .args(["-c", &program])
            .output()
            .expect("run bash");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let subcommands = complete("pod-detail-collector ''");
    for word in ["serve", "get", "completions"] {
        assert!(
            subcommands.lines().any(|l| l == word),
            "{word}: {subcommands}"
        );
    }
    let flags = complete("pod-detail-collector get pods -");
    for flag in [
        "--namespace",
        "--all-namespaces",
        "--output",
        "--docker-host",
    ] {
        assert!(flags.lines().any(|l| l == flag), "{flag}: {flags}");
    }
    let outputs = complete("pod-detail-collector get pods -o ''");
    for value in ["wide", "json", "yaml", "name"] {
        assert!(outputs.lines().any(|l| l == value), "{value}: {outputs}");
    }

    let zsh = run(&env, &["completions", "zsh"]).await.ok();
    assert!(
        zsh.stdout.starts_with("#compdef pod-detail-collector"),
        "{}",
        zsh.stdout
    );
    let fish = run(&env, &["completions", "fish"]).await.ok();
    assert!(
        fish.stdout.contains("complete -c pod-detail-collector"),
        "{}",
        fish.stdout
    );
    // Syntax-checked by the shells themselves where they are installed.
    for (shell, text) in [("zsh", &zsh.stdout), ("fish", &fish.stdout)] {
        let file = dir.join(format!("completion.{shell}"));
        std::fs::write(&file, text).expect("write the script");
        match std::process::Command::new(shell)
            .arg("-n")
            .arg(&file)
            .output()
        {
            Ok(out) => assert!(out.status.success(), "{shell} -n: {out:?}"),
            Err(_) => eprintln!("{shell} is not installed: its script is not syntax-checked"),
        }
    }

    let wrong = run(&env, &["completions", "powershell"]).await;
    assert_eq!(wrong.code, i32::from(exit::USAGE), "{wrong:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}
