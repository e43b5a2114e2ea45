//! Credentials on command lines (issue 12): flag values that look like credentials are redacted
//! like environment values, in every route (pod detail, pod list, container list) and in the
//! last-applied configuration, while paths to key files and everything else stay readable;
//! revealing is explicit.
//!
//! Needs the test daemon (`DOCKER_HOST`) and images: run `scripts/test`.

mod faults;
mod support;

use faults::{client, post};
use pod_detail_collector::server;
use serde_json::{Value, json};
use support::service::settings_for;
use support::{Container, Node, Pod};

fn answer_value(answer: &faults::Answer, key: &str) -> Value {
    assert_eq!(answer.status, 200, "{key}: {}", answer.body);
    let outer: Value = serde_json::from_str(&answer.body).expect("JSON");
    serde_json::from_str(outer[key].as_str().expect("a JSON string")).expect("JSON inside")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_command_lines_are_redacted_in_every_route_unless_revealed() {
    let node = Node::new().await;
    let s = support::util::random_hex(12);
    let secret = |n: u8| format!("s{n}-{s}");
    let ns = node.ns("cmdline");
    let applied = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "api", "namespace": ns},
        "spec": {"containers": [{
            "name": "api",
            "command": ["sh", "-c"],
            "args": ["exec sleep 86400", "pdc", format!("--token={}", secret(7))],
            "env": [{"name": "X", "value": secret(8)}],
        }]},
    })
    .to_string();
    // `sh -c SCRIPT ARG0 ARGS…`: the shell ignores what follows the script, Docker keeps it.
    let args = [
        format!("exec sleep 86400 # DB_PASSWORD={}", secret(3)),
        "pdc".to_string(),
        format!("--db-token={}", secret(4)),
        "--client-key".to_string(),
        secret(5),
        format!("--db=postgres://app:{}@db:5432/shop", secret(6)),
        "--api-key=/etc/keys/api.key".to_string(),
        "--tls-private-key-file=/etc/tls/tls.key".to_string(),
        "--password".to_string(),
        secret(1),
        "--port=8443".to_string(),
    ];
    node.run(
        Pod::new(ns.clone(), "api")
            .annotation("kubectl.kubernetes.io/last-applied-configuration", &applied)
            .container(Container::new("api").command(["sh", "-c"]).args(&args)),
    )
    .await;
    let secrets: Vec<String> = (1..=8).map(secret).collect();

    let running = server::start(settings_for(&node)).await.expect("start");
    let http = client();
    let detail = post(
        &http,
        running.addr,
        "podDetailCollector",
        &json!({"pod.namespace": ns, "pod.name": "api"}),
    )
    .await;
    let list = post(
        &http,
        running.addr,
        "podListCollector",
        &json!({"pod.namespace": ns}),
    )
    .await;
    let containers = post(
        &http,
        running.addr,
        "containerCollector",
        &json!({"container.all": true}),
    )
    .await;
    for (route, answer) in [
        ("detail", &detail),
        ("list", &list),
        ("containers", &containers),
    ] {
        assert_eq!(answer.status, 200, "{route}: {}", answer.body);
        for secret in &secrets {
            assert!(
                !answer.body.contains(secret.as_str()),
                "{route} leaks {secret}: {}",
                answer.body
            );
        }
    }
    let pod = answer_value(&detail, "collector.kubernetes.pod.detail");
    let shown = &pod["spec"]["containers"][0]["args"];
    assert_eq!(
        shown,
        &json!([
            "exec sleep 86400 # DB_PASSWORD=<redacted>",
            "pdc",
            "--db-token=<redacted>",
            "--client-key",
            "<redacted>",
            "--db=postgres://app:<redacted>@db:5432/shop",
            "--api-key=/etc/keys/api.key",
            "--tls-private-key-file=/etc/tls/tls.key",
            "--password",
            "<redacted>",
            "--port=8443",
        ]),
        "args"
    );
    let annotation =
        pod["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .expect("last-applied kept, redacted");
    assert!(annotation.contains("--token=<redacted>"), "{annotation}");
    // The container list's command lines: redacted, the rest readable.
    let listed = answer_value(&containers, "collector.kubernetes.container.list");
    let command = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["Command"].as_str())
        .find(|c| c.contains("--db-token="))
        .expect("the app container in the container list");
    assert!(
        command.contains("--db-token=<redacted>") && command.contains("/etc/tls/tls.key"),
        "{command}"
    );
    running.shutdown().await;

    // Revealing is explicit.
    let mut settings = settings_for(&node);
    settings.reveal_env = true;
    let revealing = server::start(settings).await.expect("start");
    let detail = post(
        &http,
        revealing.addr,
        "podDetailCollector",
        &json!({"pod.namespace": ns, "pod.name": "api"}),
    )
    .await;
    let containers = post(
        &http,
        revealing.addr,
        "containerCollector",
        &json!({"container.all": true}),
    )
    .await;
    for secret in [secret(1), secret(5), secret(7)] {
        assert!(detail.body.contains(secret.as_str()), "revealed {secret}");
    }
    assert!(containers.body.contains(secret(4).as_str()));
    revealing.shutdown().await;
    eprintln!(
        "redaction: 8 credentials on a command line, in a shell script, a URL and the \
         last-applied configuration: none in the pod detail, pod list or container list; key \
         file paths and other flags shown; all shown with reveal"
    );
}
