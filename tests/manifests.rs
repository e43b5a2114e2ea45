//! The Kubernetes manifests under deploy/, validated offline.
//!
//! `tests/deploy/validate.py` renders every kustomization and checks each object against the
//! Kubernetes OpenAPI schemas bundled in the `kubernetes-validate` package (strict, several
//! Kubernetes versions) and the KubeDiag kinds against the schemas in `tests/deploy/schemas/`,
//! then what the collector needs from its DaemonSet and Operation. It runs in the virtualenv
//! that `scripts/ci-deps` makes; `PDC_PYTHON` may name another interpreter that has
//! tests/deploy/requirements.txt installed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("PDC_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = std::env::var_os("PDC_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".test-env/venv-deploy"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} does not exist: run scripts/ci-deps (it makes the virtualenv with kubernetes-validate)",
        python.display()
    );
    python
}

fn validate(args: &[&str]) -> Output {
    Command::new(python())
        .arg(repo().join("tests/deploy/validate.py"))
        .args(args)
        .output()
        .expect("run tests/deploy/validate.py")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path = std::env::temp_dir().join(format!("pdc-{what}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn edit(path: &Path, from: &str, to: &str) {
    let content = std::fs::read_to_string(path).unwrap();
    assert!(content.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, content.replacen(from, to, 1)).unwrap();
}

#[test]
fn every_manifest_passes_offline_schema_validation() {
    let out = validate(&[]);
    let report = text(&out);
    println!("{report}");
    assert!(out.status.success(), "deploy/ does not validate:\n{report}");
    assert!(report.contains(" passed, 0 failed"), "{report}");
}

/// The validator is not vacuous: each kind of mistake it exists for is caught.
#[test]
fn validator_rejects_broken_manifests() {
    let tmp = TempDir::new("deploy-broken");
    let deploy = tmp.0.join("deploy");
    copy_tree(&repo().join("deploy"), &deploy);
    let ds = deploy.join("base/daemonset.yaml");
    // An unknown field (the Kubernetes schema, strict).
    edit(&ds, "hostPID: true", "hostPid: true");
    // A quantity the API server would refuse.
    edit(&ds, "memory: 32Mi", "memory: 32MB!");
    // A writable host mount.
    edit(
        &ds,
        "mountPath: /host/proc\n              readOnly: true",
        "mountPath: /host/proc",
    );
    // A writable mount of the runtime sockets' directory.
    edit(
        &ds,
        "mountPath: /var/run\n              readOnly: true",
        "mountPath: /var/run",
    );
    // The Operation on another port than the DaemonSet's, and a misspelt field (KubeDiag schema).
    edit(&deploy.join("operation.yaml"), "port: 8095", "port: 8096");
    edit(
        &deploy.join("kubediag-v0.2/operation.yaml"),
        "timeoutSeconds: 60",
        "timeoutSecond: 60",
    );
    // An Operation without the token the DaemonSet requires, and a token Secret that may be
    // missing (the collector would then not start, or start without a token).
    edit(
        &deploy.join("node-operations.yaml"),
        "/processor/containerCollector?token=REPLACE_WITH_THE_TOKEN",
        "/processor/containerCollector",
    );
    edit(
        &ds,
        "secretName: pod-detail-collector-token",
        "secretName: pod-detail-collector-token\n            optional: true",
    );
    // A manifest that no kustomization installs.
    std::fs::write(
        deploy.join("stray.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stray\n  namespace: pod-detail-collector\n",
    )
    .unwrap();

    let out = validate(&["--deploy", deploy.to_str().unwrap()]);
    let report = text(&out);
    assert!(!out.status.success(), "broken manifests passed:\n{report}");
    for expected in [
        "'hostPid' was unexpected",
        "requests.memory is a quantity: '32MB!'",
        "host /proc mounted read-only",
        "host /var/run mounted read-only",
        "Operation calls http://<node>:8095/processor/podDetailCollector: (None, 8096,",
        "'timeoutSecond' was unexpected",
        "deploy/stray.yaml: used by a kustomization",
        "Operation runtime-container-collector carries the token (?token=)",
        "the token Secret is not optional",
    ] {
        assert!(report.contains(expected), "no {expected:?} in:\n{report}");
    }
}

/// Every environment variable the DaemonSet sets is one the binary reads.
#[test]
fn daemonset_env_vars_are_flags_of_the_binary() {
    let tmp = TempDir::new("rendered");
    let dump = tmp.0.join("rendered.json");
    let out = validate(&["--dump-json", dump.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let rendered: Value = serde_json::from_slice(&std::fs::read(&dump).unwrap()).unwrap();

    let help = Command::new(env!("CARGO_BIN_EXE_pod-detail-collector"))
        .args(["serve", "--help"])
        .output()
        .expect("run pod-detail-collector serve --help");
    assert!(help.status.success(), "{}", text(&help));
    let help = String::from_utf8_lossy(&help.stdout);

    let mut names = BTreeSet::new();
    for docs in rendered.as_object().unwrap().values() {
        for doc in docs
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"] == "DaemonSet")
        {
            for container in doc["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
            {
                for env in container["env"].as_array().into_iter().flatten() {
                    names.insert(env["name"].as_str().unwrap().to_string());
                }
            }
        }
    }
    assert!(
        names.contains("PDC_LISTEN") && names.contains("NODE_NAME"),
        "{names:?}"
    );
    // RUST_LOG is read by the logger, not by a flag.
    names.remove("RUST_LOG");
    for name in names {
        assert!(
            help.contains(&format!("env: {name}=")) || help.contains(&format!("env: {name}]")),
            "the DaemonSet sets {name}, which `serve --help` does not list:\n{help}"
        );
    }
}

#[test]
fn scripts_are_valid_bash() {
    for script in ["scripts/build-image", "scripts/ci-deps"] {
        let out = Command::new("bash")
            .arg("-n")
            .arg(repo().join(script))
            .output()
            .expect("run bash -n");
        assert!(out.status.success(), "{script}: {}", text(&out));
    }
}
