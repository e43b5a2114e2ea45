//! Small helpers shared by the fixtures: where the daemon and images are, randomness,
//! timestamps, and waiting for containers.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum};

/// The daemon the tests talk to: `$DOCKER_HOST`, else the usual socket.
pub fn docker_host() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.trim().is_empty() => h.trim().to_string(),
        _ => "unix:///var/run/docker.sock".to_string(),
    }
}

/// Sandbox (pause) image, built by `scripts/test`.
pub fn pause_image() -> String {
    env_or("PDC_TEST_PAUSE_IMAGE", "pdc-test/pause:1")
}

/// Application image, built by `scripts/test`: `CMD ["sleep","86400"]`, `ENV PATH=…`,
/// `ENV IMAGE_DEFAULT=from-image`, `LABEL org.opencontainers.image.vendor=pdc-test`.
pub fn app_image() -> String {
    env_or("PDC_TEST_APP_IMAGE", "pdc-test/app:1")
}

fn env_or(key: &str, default: &str) -> String {
    match std::env::var(key) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => default.to_string(),
    }
}

/// Connects to the test daemon and negotiates the API version. Panics (the test fails, it is
/// not skipped) when no daemon answers.
pub async fn connect_docker() -> Docker {
    let host = docker_host();
    let docker = Docker::connect_with_host(&host).unwrap_or_else(|e| {
        panic!(
            "no docker daemon at DOCKER_HOST={host} ({e}); these tests need one: \
             run scripts/test, which starts a private daemon"
        )
    });
    docker.negotiate_version().await.unwrap_or_else(|e| {
        panic!(
            "no docker daemon answers at {host} ({e}); these tests need one: \
             run scripts/test, which starts a private daemon"
        )
    })
}

/// `n` random bytes from the kernel.
pub fn random_bytes(n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf
}

/// `n` random lowercase hex digits.
pub fn random_hex(n: usize) -> String {
    let bytes = random_bytes(n.div_ceil(2));
    let mut s: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    s.truncate(n);
    s
}

/// A random RFC 4122 version-4 UUID, the way the API server makes pod UIDs.
pub fn random_uuid() -> String {
    let mut b = random_bytes(16);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// 64-bit FNV-1a, for stable fake hashes (container hash, static pod config hash).
pub fn fnv64(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0u8)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Now as RFC 3339 with nanoseconds in UTC, like Go's `time.Now().Format(time.RFC3339Nano)`
/// on a UTC node (trailing zeros of the fraction dropped).
pub fn now_rfc3339_nano() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, dd) = civil_from_days(days);
    let mut frac = format!("{:09}", d.subsec_nanos());
    while frac.ends_with('0') {
        frac.pop();
    }
    let frac = if frac.is_empty() {
        String::new()
    } else {
        format!(".{frac}")
    };
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}{frac}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Inspects a container, panicking with context on failure.
pub async fn inspect(docker: &Docker, id: &str) -> ContainerInspectResponse {
    docker
        .inspect_container(id, None)
        .await
        .unwrap_or_else(|e| panic!("inspect container {id}: {e}"))
}

/// The container's state as Docker names it (`created`, `running`, `exited`, …).
pub fn status_of(c: &ContainerInspectResponse) -> Option<ContainerStateStatusEnum> {
    c.state.as_ref().and_then(|s| s.status)
}

/// Polls until the container's status is one of `wanted`; panics after `timeout`.
pub async fn wait_status(
    docker: &Docker,
    id: &str,
    wanted: &[ContainerStateStatusEnum],
    timeout: Duration,
) -> ContainerInspectResponse {
    let deadline = Instant::now() + timeout;
    loop {
        let c = inspect(docker, id).await;
        if let Some(s) = status_of(&c)
            && wanted.contains(&s)
        {
            return c;
        }
        if Instant::now() > deadline {
            panic!(
                "container {id} did not reach {wanted:?} within {timeout:?}; state: {:?}",
                c.state
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `State.StartedAt` and `State.FinishedAt` of a container, as Docker writes them.
pub async fn state_times(docker: &Docker, id: &str) -> (String, String) {
    let c = inspect(docker, id).await;
    let st = c.state.unwrap_or_default();
    (
        st.started_at.unwrap_or_default(),
        st.finished_at.unwrap_or_default(),
    )
}

/// The ID (`sha256:…`) of an image.
pub async fn image_id(docker: &Docker, image: &str) -> String {
    docker
        .inspect_image(image)
        .await
        .unwrap_or_else(|e| panic!("inspect image {image}: {e}"))
        .id
        .expect("image id")
}

/// Makes (once) an image `target` that is `base` plus these `LABEL`s, the way an image's own
/// labels get there (`docker commit --change 'LABEL …'` of a container that never ran).
/// Returns `target`.
pub async fn labelled_image(
    docker: &Docker,
    base: &str,
    target: &str,
    labels: &[(&str, &str)],
) -> String {
    if docker.inspect_image(target).await.is_ok() {
        return target.to_string();
    }
    let holder = docker
        .create_container(
            Some(bollard::query_parameters::CreateContainerOptions {
                name: Some(format!("pdc-image-holder-{}", random_hex(8))),
                ..Default::default()
            }),
            bollard::models::ContainerCreateBody {
                image: Some(base.to_string()),
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("create a container of {base}: {e}"))
        .id;
    let changes: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            format!(
                "LABEL {}={}",
                serde_json::to_string(k).expect("json"),
                serde_json::to_string(v).expect("json")
            )
        })
        .collect();
    let (repo, tag) = target.rsplit_once(':').unwrap_or((target, "latest"));
    let committed = docker
        .commit_container(
            bollard::query_parameters::CommitContainerOptionsBuilder::new()
                .container(&holder)
                .repo(repo)
                .tag(tag)
                .changes(&changes.join("\n"))
                .build(),
            bollard::models::ContainerConfig::default(),
        )
        .await;
    let _ = docker
        .remove_container(
            &holder,
            Some(bollard::query_parameters::RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
    committed.unwrap_or_else(|e| panic!("commit {target} from {base}: {e}"));
    target.to_string()
}
