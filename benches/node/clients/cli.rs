//! The docker command line: `docker ps` + `docker inspect` + `docker image inspect`.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::layout::PodKey;
use crate::measure::{Bench, Point};

/// What a person on the node would type.
fn cli_query(docker_cli: &str, key: &PodKey) -> Result<(), String> {
    let ids = run_cli(
        docker_cli,
        &[
            "ps",
            "-a",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=io.kubernetes.pod.namespace={}", key.namespace),
            "--filter",
            &format!("label=io.kubernetes.pod.name={}", key.name),
        ],
    )?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if ids.is_empty() {
        return Err(format!("no container for {}/{}", key.namespace, key.name));
    }
    let mut args = vec!["inspect", "--type", "container"];
    args.extend(&ids);
    let inspected: Value = serde_json::from_str(&run_cli(docker_cli, &args)?)
        .map_err(|err| format!("docker inspect printed no JSON: {err}"))?;
    let images: BTreeSet<&str> = inspected
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("Image").and_then(Value::as_str))
        .collect();
    let mut args = vec!["image", "inspect"];
    args.extend(images);
    run_cli(docker_cli, &args).map(drop)
}

fn run_cli(docker_cli: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(docker_cli)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("cannot run {docker_cli}: {err}"))?;
    if !out.status.success() {
        return Err(format!(
            "{docker_cli} {}: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|err| err.to_string())
}

impl Bench<'_> {
    pub(crate) async fn cli(&self) -> Point {
        let cli = self.config.docker_cli.clone();
        self.point("cli", 1, self.config.cli_requests, None, move |k| {
            let cli = cli.clone();
            async move {
                tokio::task::spawn_blocking(move || cli_query(&cli, &k))
                    .await
                    .map_err(|err| err.to_string())?
            }
        })
        .await
    }
}
