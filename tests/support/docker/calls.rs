//! The Docker calls the layout makes, each with the wait that follows it: create a container,
//! start an instance and wait until it has settled as its [`Instance`] asks, stop a container
//! and wait until it has exited, force-remove containers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions, StopContainerOptions,
};

use super::WAIT;
use crate::support::scenario::Instance;
use crate::support::util;

/// Creates a container by this name; its ID.
pub async fn create(docker: &Docker, name: &str, body: ContainerCreateBody) -> String {
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.to_string()),
                ..Default::default()
            }),
            body,
        )
        .await
        .unwrap_or_else(|e| panic!("create container {name}: {e}"))
        .id
}

/// Starts the instance (unless it is `Created`) and waits until it is in its final state.
pub async fn settle(docker: &Docker, id: &str, name: &str, inst: &Instance) {
    start(docker, id, name, inst).await;
    wait_settled(docker, id, name, inst).await;
}

/// Starts the instance unless it is `Created`; a `CannotRun` one must fail to start.
pub async fn start(docker: &Docker, id: &str, name: &str, inst: &Instance) {
    match inst {
        Instance::Created => {}
        Instance::CannotRun => {
            let started = docker.start_container(id, None).await;
            assert!(
                started.is_err(),
                "container {name} was meant to fail to start"
            );
        }
        _ => docker
            .start_container(id, None)
            .await
            .unwrap_or_else(|e| panic!("start container {name}: {e}")),
    }
}

/// Waits until a started instance is in its final state.
pub async fn wait_settled(docker: &Docker, id: &str, name: &str, inst: &Instance) {
    use ContainerStateStatusEnum::{CREATED, EXITED, RUNNING};
    match inst {
        Instance::Created => {
            util::wait_status(docker, id, &[CREATED], WAIT).await;
        }
        Instance::CannotRun => {
            let c = util::wait_status(docker, id, &[CREATED, EXITED], WAIT).await;
            let st = c.state.as_ref().expect("state");
            assert_ne!(st.exit_code, Some(0), "container {name}: {st:?}");
        }
        Instance::Running => {
            let c = util::wait_status(docker, id, &[RUNNING, EXITED], WAIT).await;
            assert_eq!(
                util::status_of(&c),
                Some(RUNNING),
                "container {name} was meant to keep running but exited: {:?}",
                c.state
            );
        }
        Instance::Exit(code)
        | Instance::ExitWithMessage(code, _)
        | Instance::ExitWithLog(code, _) => {
            let c = util::wait_status(docker, id, &[EXITED], WAIT).await;
            let got = c.state.as_ref().and_then(|s| s.exit_code);
            assert_eq!(got, Some(*code), "container {name} exit code");
        }
        Instance::OomKilled => {
            let c = wait_oom_killed(docker, id).await;
            let st = c.state.as_ref().expect("state");
            assert_eq!(
                st.oom_killed,
                Some(true),
                "container {name} was meant to be OOM-killed: {st:?}"
            );
        }
    }
}

/// Waits until the container has exited and, for up to 10 s more, until Docker has flagged it
/// OOM-killed; the last inspection.
async fn wait_oom_killed(docker: &Docker, id: &str) -> ContainerInspectResponse {
    let mut c = util::wait_status(docker, id, &[ContainerStateStatusEnum::EXITED], WAIT).await;
    // Docker learns of the OOM kill from its own event, which may be handled just after the
    // exit: give the flag a moment to be set.
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.state.as_ref().and_then(|s| s.oom_killed) != Some(true) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        c = util::inspect(docker, id).await;
    }
    c
}

/// `docker stop -t 10`, then waits until the container has exited; `what` names it in a panic.
pub async fn stop_and_wait(docker: &Docker, id: &str, what: &str) {
    docker
        .stop_container(
            id,
            Some(StopContainerOptions {
                t: Some(10),
                ..Default::default()
            }),
        )
        .await
        .unwrap_or_else(|e| panic!("stop {what}: {e}"));
    util::wait_status(docker, id, &[ContainerStateStatusEnum::EXITED], WAIT).await;
}

/// `docker rm -f -v`. Best effort.
pub async fn force_remove(docker: &Docker, id: &str) {
    let _ = docker
        .remove_container(
            id,
            Some(RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            }),
        )
        .await;
}

/// Force-removes every container of these namespaces (all states). Best effort.
pub async fn remove_namespaces(docker: &Docker, namespaces: &[String]) {
    for ns in namespaces {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("io.kubernetes.pod.namespace={ns}")],
        )]);
        let Ok(list) = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
        else {
            continue;
        };
        for c in list {
            if let Some(id) = c.id {
                force_remove(docker, &id).await;
            }
        }
    }
}
