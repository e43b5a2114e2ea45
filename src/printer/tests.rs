//! kubectl's printer rules on hand-written pods, and the output formats.

use super::*;
use serde_json::{Value, json};

fn now() -> Timestamp {
    "2026-11-22T12:00:00Z".parse().unwrap()
}

/// `seconds` before [`now`], as the API writes a time.
fn ago(seconds: i64) -> String {
    (now() - SignedDuration::from_secs(seconds)).to_string()
}

fn pod(value: Value) -> Pod {
    serde_json::from_value(value).expect("a Pod")
}

fn row(value: Value) -> PodRow {
    pod_row(&pod(value), now())
}

fn running(name: &str, restarts: i32) -> Value {
    json!({"name": name, "ready": true, "started": true, "restartCount": restarts,
           "image": "app:1", "imageID": "",
           "state": {"running": {"startedAt": ago(60)}}})
}

fn terminated(name: &str, code: i32, reason: Option<&str>) -> Value {
    let mut t = json!({"exitCode": code, "startedAt": ago(120), "finishedAt": ago(90)});
    if let Some(reason) = reason {
        t["reason"] = json!(reason);
    }
    json!({"name": name, "ready": false, "started": false, "restartCount": 0,
           "image": "app:1", "imageID": "", "state": {"terminated": t}})
}

fn waiting(name: &str, reason: &str) -> Value {
    json!({"name": name, "ready": false, "restartCount": 0, "image": "app:1", "imageID": "",
           "state": {"waiting": {"reason": reason}}})
}

/// A pod with these app containers (by status) and phase.
fn app_pod(phase: &str, statuses: Vec<Value>) -> Value {
    let containers: Vec<Value> = statuses
        .iter()
        .map(|s| json!({"name": s["name"].clone()}))
        .collect();
    json!({
        "metadata": {"name": "web-1", "namespace": "shop"},
        "spec": {"nodeName": "node-1", "containers": containers},
        "status": {"phase": phase, "startTime": ago(5 * 3600), "containerStatuses": statuses}
    })
}

#[test]
fn durations_read_as_kubectl_writes_them() {
    let cases = [
        (0, "0s"),
        (1, "1s"),
        (119, "119s"),
        (120, "2m"),
        (150, "2m30s"),
        (599, "9m59s"),
        (600, "10m"),
        (131 * 60, "131m"),
        (179 * 60 + 59, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 5 * 60, "3h5m"),
        (8 * 3600 + 59 * 60, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (53 * 3600, "2d5h"),
        (8 * 86400, "8d"),
        (400 * 86400, "400d"),
        (730 * 86400, "2y"),
        (800 * 86400, "2y70d"),
        (9 * 365 * 86400, "9y"),
        (-1, "0s"),
        (-5, "<invalid>"),
    ];
    for (seconds, shown) in cases {
        assert_eq!(
            human_duration(SignedDuration::from_secs(seconds)),
            shown,
            "{seconds}s"
        );
    }
}

#[test]
fn a_running_pod_is_ready_and_running() {
    let r = row(app_pod(
        "Running",
        vec![running("app", 0), running("log", 0)],
    ));
    assert_eq!(
        r,
        PodRow {
            namespace: "shop".into(),
            name: "web-1".into(),
            ready: "2/2".into(),
            status: "Running".into(),
            restarts: "0".into(),
            age: "5h".into(),
            ip: "<none>".into(),
            node: "node-1".into(),
        }
    );
}

#[test]
fn restarts_show_the_last_restarts_age() {
    let mut app = running("app", 5);
    app["lastState"] = json!({"terminated": {"exitCode": 1, "reason": "Error",
        "startedAt": ago(400), "finishedAt": ago(180)}});
    let mut log = running("log", 1);
    log["lastState"] = json!({"terminated": {"exitCode": 2, "finishedAt": ago(3600)}});
    let r = row(app_pod("Running", vec![app, log]));
    // Restarts add up; the newest restart is the one shown.
    assert_eq!(r.restarts, "6 (3m ago)");
    assert_eq!(r.status, "Running");

    // Without a finish time, the count alone.
    let r = row(app_pod("Running", vec![running("app", 5)]));
    assert_eq!(r.restarts, "5");
}

#[test]
fn finished_pods_show_how_they_ended() {
    let r = row(app_pod(
        "Succeeded",
        vec![terminated("job", 0, Some("Completed"))],
    ));
    assert_eq!((r.ready.as_str(), r.status.as_str()), ("0/1", "Completed"));

    let r = row(app_pod("Failed", vec![terminated("job", 1, Some("Error"))]));
    assert_eq!(r.status, "Error");

    let r = row(app_pod(
        "Running",
        vec![terminated("app", 137, Some("OOMKilled"))],
    ));
    assert_eq!(r.status, "OOMKilled");

    let r = row(app_pod(
        "Failed",
        vec![terminated("app", 127, Some("ContainerCannotRun"))],
    ));
    assert_eq!(r.status, "ContainerCannotRun");

    // No reason: the exit code, or the signal.
    let r = row(app_pod("Failed", vec![terminated("app", 3, None)]));
    assert_eq!(r.status, "ExitCode:3");
    let mut killed = terminated("app", 137, None);
    killed["state"]["terminated"]["signal"] = json!(9);
    assert_eq!(row(app_pod("Failed", vec![killed])).status, "Signal:9");
}

#[test]
fn the_first_container_in_spec_order_with_a_reason_decides() {
    // kubectl walks the statuses from the last one, so the first one with a reason wins.
    let r = row(app_pod(
        "Running",
        vec![
            waiting("app", "ContainerCreating"),
            terminated("log", 1, Some("Error")),
        ],
    ));
    assert_eq!(r.status, "ContainerCreating");
    assert_eq!(r.ready, "0/2");
}

#[test]
fn a_pod_still_being_created_is_container_creating() {
    let r = row(app_pod(
        "Pending",
        vec![waiting("app", "ContainerCreating")],
    ));
    assert_eq!(
        (r.ready.as_str(), r.status.as_str()),
        ("0/1", "ContainerCreating")
    );
}

#[test]
fn a_completed_container_beside_a_running_one_is_running_or_not_ready() {
    let mut value = app_pod(
        "Running",
        vec![running("app", 0), terminated("once", 0, Some("Completed"))],
    );
    assert_eq!(row(value.clone()).status, "NotReady");
    value["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
    assert_eq!(row(value).status, "Running");
}

fn init_pod(init: Vec<Value>, apps: Vec<Value>, app_names: &[&str]) -> Value {
    let init_specs: Vec<Value> = init.iter().map(|s| json!({"name": s["name"]})).collect();
    let containers: Vec<Value> = app_names.iter().map(|n| json!({"name": n})).collect();
    json!({
        "metadata": {"name": "db-0", "namespace": "shop"},
        "spec": {"initContainers": init_specs, "containers": containers},
        "status": {"phase": "Pending", "initContainerStatuses": init, "containerStatuses": apps,
                   "conditions": [{"type": "Initialized", "status": "False"}]}
    })
}

#[test]
fn init_containers_show_their_progress() {
    let migrate = terminated("migrate", 0, Some("Completed"));
    let r = row(init_pod(
        vec![migrate.clone(), running("wait-for-db", 0)],
        vec![],
        &["db"],
    ));
    assert_eq!((r.ready.as_str(), r.status.as_str()), ("0/1", "Init:1/2"));

    let r = row(init_pod(vec![running("migrate", 0)], vec![], &["db"]));
    assert_eq!(r.status, "Init:0/1");

    let r = row(init_pod(
        vec![migrate.clone(), terminated("seed", 1, Some("Error"))],
        vec![],
        &["db"],
    ));
    assert_eq!(r.status, "Init:Error");

    let r = row(init_pod(vec![terminated("seed", 2, None)], vec![], &["db"]));
    assert_eq!(r.status, "Init:ExitCode:2");

    let mut crashing = waiting("seed", "CrashLoopBackOff");
    crashing["restartCount"] = json!(4);
    crashing["lastState"] = json!({"terminated": {"exitCode": 1, "finishedAt": ago(30)}});
    let r = row(init_pod(vec![crashing], vec![], &["db"]));
    assert_eq!(r.status, "Init:CrashLoopBackOff");
    assert_eq!(r.restarts, "4 (30s ago)");

    // PodInitializing is not a reason to show.
    let r = row(init_pod(
        vec![waiting("seed", "PodInitializing")],
        vec![],
        &["db"],
    ));
    assert_eq!(r.status, "Init:0/1");

    // Every init container done: the app containers decide, and only their restarts count.
    let mut done = migrate;
    done["restartCount"] = json!(2);
    let mut value = init_pod(vec![done], vec![running("db", 0)], &["db"]);
    value["status"]["phase"] = json!("Running");
    let r = row(value);
    assert_eq!(
        (r.ready.as_str(), r.status.as_str(), r.restarts.as_str()),
        ("1/1", "Running", "0")
    );
}

#[test]
fn sidecars_count_among_the_containers() {
    let mut value = init_pod(vec![running("proxy", 1)], vec![running("app", 0)], &["app"]);
    value["spec"]["initContainers"][0]["restartPolicy"] = json!("Always");
    value["status"]["phase"] = json!("Running");
    value["status"]["conditions"] = json!([{"type": "Initialized", "status": "True"}]);
    let r = row(value);
    assert_eq!(
        (r.ready.as_str(), r.status.as_str(), r.restarts.as_str()),
        ("2/2", "Running", "1")
    );
}

#[test]
fn pods_being_deleted_are_terminating_until_they_end() {
    let mut value = app_pod("Running", vec![running("app", 0)]);
    value["metadata"]["deletionGracePeriodSeconds"] = json!(30);
    assert_eq!(row(value.clone()).status, "Terminating");

    value["status"]["phase"] = json!("Succeeded");
    value["status"]["containerStatuses"] = json!([terminated("app", 0, Some("Completed"))]);
    assert_eq!(row(value.clone()).status, "Completed");

    value["status"]["phase"] = json!("Running");
    value["status"]["reason"] = json!("NodeLost");
    assert_eq!(row(value).status, "Unknown");
}

#[test]
fn a_scheduling_gated_pod_says_so() {
    let mut value = app_pod("Pending", vec![]);
    value["status"]["conditions"] =
        json!([{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]);
    assert_eq!(row(value).status, "SchedulingGated");
}

#[test]
fn age_counts_from_creation_else_from_the_sandbox_start() {
    let mut value = app_pod("Running", vec![running("app", 0)]);
    assert_eq!(row(value.clone()).age, "5h");
    value["metadata"]["creationTimestamp"] = json!(ago(3 * 86400));
    assert_eq!(row(value.clone()).age, "3d");
    value["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("creationTimestamp");
    value["status"].as_object_mut().unwrap().remove("startTime");
    assert_eq!(row(value).age, "<unknown>");
}

#[test]
fn wide_columns_are_the_first_pod_ip_and_the_node() {
    let mut value = app_pod("Running", vec![running("app", 0)]);
    value["status"]["podIPs"] = json!([{"ip": "198.51.100.7"}, {"ip": "2001:db8::7"}]);
    let r = row(value.clone());
    assert_eq!((r.ip.as_str(), r.node.as_str()), ("198.51.100.7", "node-1"));
    value["spec"].as_object_mut().unwrap().remove("nodeName");
    value["status"].as_object_mut().unwrap().remove("podIPs");
    let r = row(value);
    assert_eq!((r.ip.as_str(), r.node.as_str()), ("<none>", "<none>"));
}

fn sample_rows() -> Vec<PodRow> {
    let mut scheduler = running("kube-scheduler", 31);
    scheduler["lastState"] =
        json!({"terminated": {"exitCode": 2, "reason": "Error", "finishedAt": ago(131 * 60)}});
    let mut a = app_pod("Running", vec![scheduler]);
    a["metadata"] = json!({"name": "kube-scheduler-node-1", "namespace": "kube-system"});
    a["status"]["podIPs"] = json!([{"ip": "10.0.2.15"}]);
    let b = app_pod("Succeeded", vec![terminated("job", 0, Some("Completed"))]);
    vec![row(a), row(b)]
}

#[test]
fn the_table_is_aligned_as_kubectls_tab_writer_aligns_it() {
    let rows = sample_rows();
    assert_eq!(
        table(&rows, Columns::default()),
        "\
NAME                    READY   STATUS      RESTARTS        AGE
kube-scheduler-node-1   1/1     Running     31 (131m ago)   5h
web-1                   0/1     Completed   0               5h
"
    );
    assert_eq!(
        table(
            &rows,
            Columns {
                namespace: true,
                wide: true
            }
        ),
        "\
NAMESPACE     NAME                    READY   STATUS      RESTARTS        AGE   IP          NODE
kube-system   kube-scheduler-node-1   1/1     Running     31 (131m ago)   5h    10.0.2.15   node-1
shop          web-1                   0/1     Completed   0               5h    <none>      node-1
"
    );
    // Columns are at least six wide, the header alone too.
    assert_eq!(
        table(&[], Columns::default()),
        "NAME   READY   STATUS   RESTARTS   AGE\n"
    );
}

#[test]
fn names_are_kind_slash_name() {
    let pods = [
        pod(app_pod("Running", vec![])),
        pod(json!({"metadata": {"name": "b"}})),
    ];
    assert_eq!(names(&pods), "pod/web-1\npod/b\n");
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

/// A pod's JSON with what is hard to re-indent: brackets, braces, commas, colons, quotes,
/// backslashes and unicode inside strings, empty objects and arrays, nesting, numbers.
fn tricky_json() -> String {
    let value = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x", "annotations": {
            "a": "{\"k\": [1, 2], \"q\": \"\\\\\"}",
            "b": "line one\nline two\t\"quoted\" , : [ ] { }",
            "c": "ünïcödé ✓",
            "empty": ""
        }},
        "spec": {"containers": [{"name": "c", "args": [], "env": [{"name": "A", "value": "1"}]}],
                 "securityContext": {}},
        "status": {"containerStatuses": [{"restartCount": 31, "ready": true, "x": null}]}
    });
    serde_json::to_string(&value).unwrap()
}

#[test]
fn pretty_json_is_the_same_tokens_indented_as_kubectl_does() {
    assert_eq!(
        pretty_json(r#"{"a":{"b":[1,{}],"c":[]},"d":"x, y: {z}"}"#),
        r#"{
    "a": {
        "b": [
            1,
            {}
        ],
        "c": []
    },
    "d": "x, y: {z}"
}
"#
    );
    let text = tricky_json();
    let pretty = pretty_json(&text);
    assert_eq!(minified(&pretty), text);
    let reparsed: Value = serde_json::from_str(&pretty).unwrap();
    assert_eq!(reparsed, serde_json::from_str::<Value>(&text).unwrap());
}

#[test]
fn a_list_holds_the_pods_json_unchanged() {
    let one = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"}}"#;
    let two = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"b"}}"#;
    let list = list_json(&[one.to_string(), two.to_string()]);
    assert_eq!(
        list,
        format!(
            r#"{{"apiVersion":"v1","items":[{one},{two}],"kind":"List","metadata":{{"resourceVersion":""}}}}"#
        )
    );
    let value: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(value["items"][1]["metadata"]["name"], "b");
    assert_eq!(
        serde_json::from_str::<Value>(&list_json(&[])).unwrap()["items"],
        json!([])
    );
}

#[test]
fn yaml_reads_back_as_the_same_document() {
    let long_words = "word ".repeat(40);
    let value = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x", "annotations": {
            "bool-like": "true", "yes": "yes", "on": "on", "no": "No", "null-like": "null",
            "tilde": "~", "int-like": "1", "octal-like": "0755", "float-like": "1e3",
            "hex-like": "0x1F", "sexagesimal": "1:20", "date-like": "2026-11-22",
            "empty": "", "space": " lead and trail ", "colon": "a: b", "hash": "# not a comment",
            "dash": "- item", "star": "*alias", "amp": "&anchor", "bang": "!tag",
            "multi": "line one\nline two\n", "multi-no-newline": "a\nb",
            "trailing-newlines": "a\n\n\n", "leading-newline": "\nx", "tabs": "a\tb",
            "long": long_words, "long-with-double-spaces": "a  b   c ".repeat(20),
            "quote": "it's \"quoted\"", "backslash": "C:\\path", "unicode": "ünïcödé ✓",
            "json": "{\"k\":[1,2]}", "control": "bell\u{7}"
        }},
        "spec": {"containers": [{"name": "c", "args": [], "ports": [{"containerPort": 80}]}],
                 "securityContext": {}, "terminationGracePeriodSeconds": 30},
        "status": {"containerStatuses": [{"restartCount": 31, "ready": true}],
                   "podIPs": [{"ip": "2001:db8::1"}]}
    });
    let json_text = serde_json::to_string(&value).unwrap();
    let text = yaml(&json_text).unwrap();
    let back: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back, value, "{text}");
    eprintln!("{text}");
    assert!(text.starts_with("apiVersion: v1\n"), "{text}");
}

#[test]
fn yaml_is_block_style_as_kubectl_writes_it() {
    let json_text = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","labels":{"app":"web"}},"spec":{"containers":[{"name":"c","args":["sleep","1"]}]}}"#;
    assert_eq!(
        yaml(json_text).unwrap(),
        "\
apiVersion: v1
kind: Pod
metadata:
  labels:
    app: web
  name: a
spec:
  containers:
  - args:
    - sleep
    - \"1\"
    name: c
"
    );
}
