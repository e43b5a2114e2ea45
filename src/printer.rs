//! How `get` prints pods, the way kubectl prints them. Pure: pods (and the processor's JSON
//! of them) in, text out; the clock is an argument.
//!
//! - [`table`]: kubectl's `NAME READY STATUS RESTARTS AGE` table (`NAMESPACE` first across
//!   namespaces, `IP NODE` after it for `-o wide`), each row computed as kubectl's own printer
//!   computes it (`printPod` in `pkg/printers/internalversion/printers.go`, [`pod_row`]);
//! - [`pretty_json`]: the processor's JSON re-indented, token for token (kubectl's four
//!   spaces), and [`list_json`] for several pods;
//! - [`yaml`]: the same document as YAML;
//! - [`names`]: `pod/NAME`, one a line.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// One pod as kubectl's table shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRow {
    pub namespace: String,
    pub name: String,
    /// `ready/total`.
    pub ready: String,
    pub status: String,
    /// `5`, or `5 (3m ago)` when the last restart's time is known.
    pub restarts: String,
    pub age: String,
    /// `-o wide`: the first pod IP, else `<none>`.
    pub ip: String,
    /// `-o wide`: `spec.nodeName`, else `<none>`.
    pub node: String,
}

/// Which columns the table has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Columns {
    /// `NAMESPACE` first, as kubectl with `-A`.
    pub namespace: bool,
    /// `IP` and `NODE` last, as kubectl's `-o wide`.
    pub wide: bool,
}

const NONE: &str = "<none>";
const UNKNOWN: &str = "<unknown>";

/// kubectl's row for a pod: READY, STATUS and RESTARTS by `printPod`'s rules, AGE since
/// the pod's creation. The node does not keep `creationTimestamp`, so AGE counts from
/// `status.startTime` (the sandbox's start) when that is all there is.
pub fn pod_row(pod: &Pod, now: Timestamp) -> PodRow {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let empty_statuses: &[ContainerStatus] = &[];
    let empty_conditions: &[PodCondition] = &[];
    let init_statuses = status
        .and_then(|s| s.init_container_statuses.as_deref())
        .unwrap_or(empty_statuses);
    let statuses = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or(empty_statuses);
    let conditions = status
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(empty_conditions);
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or_default();

    // Init containers whose restartPolicy is Always are sidecars: they count among the
    // containers and their restarts count once the pod is initialized.
    let init_specs: BTreeMap<&str, bool> = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.restart_policy.as_deref() == Some("Always"),
            )
        })
        .collect();
    let init_count = init_specs.len();
    let sidecar = |name: &str| init_specs.get(name).copied().unwrap_or(false);
    let mut total = spec.map_or(0, |s| s.containers.len());
    total += init_specs.values().filter(|&&always| always).count();

    let mut reason = status
        .and_then(|s| s.reason.clone())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| phase.to_string());
    if conditions
        .iter()
        .any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some("SchedulingGated"))
    {
        reason = "SchedulingGated".to_string();
    }

    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let mut ready = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;

    let mut initializing = false;
    for (i, c) in init_statuses.iter().enumerate() {
        restarts += i64::from(c.restart_count);
        let finished = last_finished(c);
        last_restart = later(last_restart, finished);
        if sidecar(&c.name) {
            sidecar_restarts += i64::from(c.restart_count);
            last_sidecar_restart = later(last_sidecar_restart, finished);
        }
        let state = c.state.as_ref();
        let terminated = state.and_then(|s| s.terminated.as_ref());
        let waiting_reason = state
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.as_deref())
            .filter(|r| !r.is_empty());
        if terminated.is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        if sidecar(&c.name) && c.started == Some(true) {
            if c.ready {
                ready += 1;
            }
            continue;
        }
        reason = match (terminated, waiting_reason) {
            (Some(t), _) => match t.reason.as_deref().filter(|r| !r.is_empty()) {
                Some(r) => format!("Init:{r}"),
                None => match t.signal.filter(|&s| s != 0) {
                    Some(signal) => format!("Init:Signal:{signal}"),
                    None => format!("Init:ExitCode:{}", t.exit_code),
                },
            },
            (None, Some(w)) if w != "PodInitializing" => format!("Init:{w}"),
            _ => format!("Init:{i}/{init_count}"),
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true(conditions, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in statuses.iter().rev() {
            restarts += i64::from(c.restart_count);
            last_restart = later(last_restart, last_finished(c));
            let state = c.state.as_ref();
            let waiting_reason = state
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref())
                .filter(|r| !r.is_empty());
            let terminated = state.and_then(|s| s.terminated.as_ref());
            if let Some(w) = waiting_reason {
                reason = w.to_string();
            } else if let Some(t) = terminated {
                reason = match t.reason.as_deref().filter(|r| !r.is_empty()) {
                    Some(r) => r.to_string(),
                    None => match t.signal.filter(|&s| s != 0) {
                        Some(signal) => format!("Signal:{signal}"),
                        None => format!("ExitCode:{}", t.exit_code),
                    },
                };
            } else if c.ready && state.is_some_and(|s| s.running.is_some()) {
                has_running = true;
                ready += 1;
            }
        }
        // A pod with a container still running is not "Completed".
        if reason == "Completed" && has_running {
            reason = if condition_true(conditions, "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    // The kubelet writes the deletion grace period on containers it creates for a pod being
    // deleted, so either field marks a pod the API server is deleting.
    let deleting =
        meta.deletion_timestamp.is_some() || meta.deletion_grace_period_seconds.is_some();
    let terminal = phase == "Succeeded" || phase == "Failed";
    let status_reason = status.and_then(|s| s.reason.as_deref());
    if deleting && status_reason == Some("NodeLost") {
        reason = "Unknown".to_string();
    } else if deleting && !terminal {
        reason = "Terminating".to_string();
    }

    let restarts = match last_restart {
        Some(at) if restarts != 0 => format!("{restarts} ({} ago)", since(at, now)),
        _ => restarts.to_string(),
    };
    let created = meta
        .creation_timestamp
        .as_ref()
        .or_else(|| status.and_then(|s| s.start_time.as_ref()));
    PodRow {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        ready: format!("{ready}/{total}"),
        status: reason,
        restarts,
        age: created.map_or_else(|| UNKNOWN.to_string(), |t| since(t.0, now)),
        ip: status
            .and_then(|s| s.pod_ips.as_ref())
            .and_then(|ips| ips.first())
            .map(|ip| ip.ip.clone())
            .filter(|ip| !ip.is_empty())
            .unwrap_or_else(|| NONE.to_string()),
        node: spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| NONE.to_string()),
    }
}

fn last_finished(c: &ContainerStatus) -> Option<Timestamp> {
    c.last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .and_then(|t| t.finished_at.as_ref())
        .map(|t| t.0)
}

fn later(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn condition_true(conditions: &[PodCondition], type_: &str) -> bool {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .is_some_and(|c| c.status == "True")
}

fn since(at: Timestamp, now: Timestamp) -> String {
    human_duration(now.duration_since(at))
}

/// kubectl's `HumanDuration` (k8s.io/apimachinery `util/duration`): about two or three
/// significant figures, `<invalid>` for a time more than a second in the future.
pub fn human_duration(d: SignedDuration) -> String {
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return match (hours / 24) % 365 {
            0 => format!("{}y", hours / 24 / 365),
            days => format!("{}y{days}d", hours / 24 / 365),
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// kubectl's table: a header and one row per pod, each column as wide as its widest cell
/// plus three spaces (at least six), the last one unpadded — kubectl's tab writer.
pub fn table(rows: &[PodRow], columns: Columns) -> String {
    let mut lines: Vec<Vec<&str>> = Vec::with_capacity(rows.len() + 1);
    let mut header = vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"];
    if columns.namespace {
        header.insert(0, "NAMESPACE");
    }
    if columns.wide {
        header.extend(["IP", "NODE"]);
    }
    lines.push(header);
    for row in rows {
        let mut cells = vec![
            row.name.as_str(),
            &row.ready,
            &row.status,
            &row.restarts,
            &row.age,
        ];
        if columns.namespace {
            cells.insert(0, &row.namespace);
        }
        if columns.wide {
            cells.extend([row.ip.as_str(), &row.node]);
        }
        lines.push(cells);
    }
    let count = lines[0].len();
    let widths: Vec<usize> = (0..count)
        .map(|i| {
            let widest = lines
                .iter()
                .map(|cells| cells[i].chars().count())
                .max()
                .unwrap_or(0);
            (widest + 3).max(6)
        })
        .collect();
    let mut out = String::new();
    for cells in &lines {
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < count {
                let pad = widths[i] - cell.chars().count();
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// `pod/NAME` a line, as `kubectl get -o name`.
pub fn names(pods: &[Pod]) -> String {
    pods.iter()
        .map(|pod| format!("pod/{}\n", pod.metadata.name.as_deref().unwrap_or_default()))
        .collect()
}

/// Several pods as kubectl writes them: a `v1` `List` of the pods' own JSON, unchanged.
pub fn list_json(pods: &[String]) -> String {
    format!(
        r#"{{"apiVersion":"v1","items":[{}],"kind":"List","metadata":{{"resourceVersion":""}}}}"#,
        pods.join(",")
    )
}

/// The JSON text re-indented as kubectl prints it (four spaces, `"key": value`), token for
/// token: taking the whitespace out again gives back exactly the text given.
pub fn pretty_json(json: &str) -> String {
    const INDENT: &str = "    ";
    let mut out = String::with_capacity(json.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = json.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(INDENT);
        }
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                // Skip whitespace to see whether the container is empty.
                while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}' | ']')) {
                    out.push(chars.next().unwrap_or_default());
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out.push('\n');
    out
}

/// The JSON document as YAML (keys in order, as kubectl writes them): read back, it is the
/// same document.
pub fn yaml(json: &str) -> Result<String, String> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    serde_saphyr::to_string(&value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
