//! The Docker context the docker CLI would use, so that a laptop (Docker Desktop, colima,
//! rootless Docker) needs no `--docker-host`. Read only when neither `--docker-host` /
//! `DOCKER_HOST` nor `--runtime-endpoint` is given, and before the well-known sockets.
//!
//! As the docker CLI decides it (`cli/command/cli.go`, `resolveContextName`, and its context
//! store): `DOCKER_CONTEXT`, else `currentContext` in `config.json` of the config directory
//! (`DOCKER_CONFIG`, else `~/.docker`); `default` (or neither) means no context. A context
//! `NAME` lives in `contexts/meta/<sha256 of NAME>/meta.json`, its daemon at
//! `Endpoints.docker.Host`; its TLS files, if any, in `contexts/tls/<sha256 of NAME>/docker/`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// A Docker context and the daemon it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerContext {
    pub name: String,
    /// `Endpoints.docker.Host`, checked to be an address the collector can talk to.
    pub host: String,
    /// Where the name came from: `DOCKER_CONTEXT` or the config file's `currentContext`.
    pub chosen_by: String,
}

/// What decides the context: the process environment, or a test's.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub docker_context: Option<String>,
    pub docker_config: Option<PathBuf>,
    pub home: Option<PathBuf>,
}

impl Env {
    pub fn from_process() -> Self {
        let var = |key| std::env::var_os(key).filter(|v| !v.is_empty());
        Env {
            docker_context: var("DOCKER_CONTEXT").map(|v| v.to_string_lossy().into_owned()),
            docker_config: var("DOCKER_CONFIG").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
        }
    }

    /// `DOCKER_CONFIG`, else `~/.docker`.
    fn config_dir(&self) -> Option<PathBuf> {
        self.docker_config
            .clone()
            .or_else(|| self.home.as_ref().map(|home| home.join(".docker")))
    }
}

/// The name the docker CLI keeps for "no context": `DOCKER_HOST` or the platform's socket.
pub const DEFAULT_CONTEXT: &str = "default";

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(rename = "currentContext", default)]
    current_context: Option<String>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(rename = "Endpoints", default)]
    endpoints: Endpoints,
}

#[derive(Deserialize, Default)]
struct Endpoints {
    #[serde(default)]
    docker: Option<Endpoint>,
}

#[derive(Deserialize)]
struct Endpoint {
    #[serde(rename = "Host", default)]
    host: Option<String>,
}

/// The context in use, `None` when there is none (or it is `default`, or names no host):
/// the collector then looks for the node's runtime. A context that is named but missing,
/// unreadable or not usable is an error, as it is for the docker CLI.
pub fn resolve(env: &Env) -> Result<Option<DockerContext>> {
    let config_dir = env.config_dir();
    let (name, chosen_by) = match &env.docker_context {
        Some(name) => (name.clone(), "DOCKER_CONTEXT".to_string()),
        None => {
            let Some(dir) = &config_dir else {
                return Ok(None);
            };
            let path = dir.join("config.json");
            match current_context(&path) {
                Some(name) => (name, format!("currentContext in {}", path.display())),
                None => return Ok(None),
            }
        }
    };
    if name == DEFAULT_CONTEXT {
        return Ok(None);
    }
    let unusable = |why: String| {
        Error::Config(format!(
            "Docker context {name:?} (from {chosen_by}) cannot be used: {why}"
        ))
    };
    let Some(dir) = config_dir else {
        return Err(unusable(
            "neither DOCKER_CONFIG nor HOME says where its files are".into(),
        ));
    };
    let digest = digest_of(&name);
    let meta_path = dir
        .join("contexts")
        .join("meta")
        .join(&digest)
        .join("meta.json");
    let text = std::fs::read_to_string(&meta_path).map_err(|err| {
        unusable(match err.kind() {
            std::io::ErrorKind::NotFound => format!("there is no {}", meta_path.display()),
            _ => format!("{} cannot be read: {err}", meta_path.display()),
        })
    })?;
    let meta: Meta = serde_json::from_str(&text)
        .map_err(|err| unusable(format!("{} is not a context: {err}", meta_path.display())))?;
    let Some(host) = meta
        .endpoints
        .docker
        .and_then(|endpoint| endpoint.host)
        .map(|host| host.trim().to_string())
        .filter(|host| !host.is_empty())
    else {
        // The docker CLI then uses its default daemon: so does the collector, looking for
        // the node's runtime.
        log::debug!("Docker context {name:?} names no docker host");
        return Ok(None);
    };
    let tls = dir
        .join("contexts")
        .join("tls")
        .join(&digest)
        .join("docker");
    if has_files(&tls) {
        return Err(unusable(format!(
            "it reaches {host} with the TLS files in {}, and the collector speaks plain HTTP \
             only: give --docker-host for a daemon on a unix socket or plain tcp",
            tls.display()
        )));
    }
    let host = crate::runtime::docker::normalize_host(&host).map_err(|_| {
        unusable(format!(
            "its host {host:?} is not a unix socket, tcp:// or http:// address"
        ))
    })?;
    Ok(Some(DockerContext {
        name,
        host,
        chosen_by,
    }))
}

/// `currentContext` of the docker CLI's config file; a file that cannot be read is passed
/// over with a warning, as the docker CLI does.
fn current_context(path: &Path) -> Option<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        Err(err) => {
            log::warn!(
                "Docker config {} cannot be read ({err}): no Docker context used",
                path.display()
            );
            return None;
        }
    };
    match serde_json::from_str::<ConfigFile>(&text) {
        Ok(config) => config.current_context.filter(|name| !name.is_empty()),
        Err(err) => {
            log::warn!(
                "Docker config {} is not valid JSON ({err}): no Docker context used",
                path.display()
            );
            None
        }
    }
}

/// The directory name of a context: the hex SHA-256 of its name (the docker CLI's
/// `digest.FromString(name).Encoded()`).
pub fn digest_of(name: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn has_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory standing for a home directory; removed on drop.
    struct Home(PathBuf);

    impl Home {
        fn new() -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "pdc-docker-context-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(dir.join(".docker")).unwrap();
            Home(dir)
        }
        fn docker(&self) -> PathBuf {
            self.0.join(".docker")
        }
        fn env(&self) -> Env {
            Env {
                home: Some(self.0.clone()),
                ..Env::default()
            }
        }
        fn current(&self, name: &str) -> &Self {
            let config = format!(r#"{{"auths":{{}},"currentContext":"{name}"}}"#);
            std::fs::write(self.docker().join("config.json"), config).unwrap();
            self
        }
        /// A context as `docker context create NAME --docker host=HOST` stores it.
        fn context(&self, name: &str, host: &str) -> &Self {
            let dir = self.docker().join("contexts/meta").join(digest_of(name));
            std::fs::create_dir_all(&dir).unwrap();
            let meta = format!(
                r#"{{"Name":"{name}","Metadata":{{"Description":""}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
            );
            std::fs::write(dir.join("meta.json"), meta).unwrap();
            self
        }
    }

    impl Drop for Home {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_directory_is_the_sha256_of_the_name() {
        // printf %s desktop-linux | sha256sum
        assert_eq!(
            digest_of("desktop-linux"),
            "fe9c6bd7a66301f49ca9b6a70b217107cd1284598bfc254700c989b916da791e"
        );
    }

    #[test]
    fn the_current_context_of_the_config_file_names_the_daemon() {
        let home = Home::new();
        home.current("desktop-linux")
            .context("desktop-linux", "unix:///Users/me/.docker/run/docker.sock");
        let context = resolve(&home.env()).unwrap().unwrap();
        assert_eq!(context.name, "desktop-linux");
        assert_eq!(context.host, "unix:///Users/me/.docker/run/docker.sock");
        assert!(
            context.chosen_by.starts_with("currentContext in "),
            "{context:?}"
        );
    }

    #[test]
    fn docker_context_wins_over_the_config_file() {
        let home = Home::new();
        home.current("broken")
            .context("colima", "unix:///home/me/.colima/default/docker.sock");
        let env = Env {
            docker_context: Some("colima".into()),
            ..home.env()
        };
        let context = resolve(&env).unwrap().unwrap();
        assert_eq!(
            (context.name.as_str(), context.chosen_by.as_str()),
            ("colima", "DOCKER_CONTEXT")
        );
        // DOCKER_CONTEXT=default turns contexts off whatever the file says.
        let env = Env {
            docker_context: Some("default".into()),
            ..home.env()
        };
        assert_eq!(resolve(&env).unwrap(), None);
    }

    #[test]
    fn docker_config_moves_the_config_directory() {
        let home = Home::new();
        home.current("remote")
            .context("remote", "tcp://192.0.2.7:2375");
        let env = Env {
            docker_config: Some(home.docker()),
            home: Some(PathBuf::from("/nonexistent")),
            ..Env::default()
        };
        assert_eq!(resolve(&env).unwrap().unwrap().host, "tcp://192.0.2.7:2375");
    }

    #[test]
    fn no_context_means_the_nodes_runtime() {
        let home = Home::new();
        // No config file, a config file without a context, the default context.
        assert_eq!(resolve(&home.env()).unwrap(), None);
        std::fs::write(home.docker().join("config.json"), r#"{"auths":{}}"#).unwrap();
        assert_eq!(resolve(&home.env()).unwrap(), None);
        home.current("default");
        assert_eq!(resolve(&home.env()).unwrap(), None);
        // A config file that is not JSON is passed over, as the docker CLI does.
        std::fs::write(home.docker().join("config.json"), "{not json").unwrap();
        assert_eq!(resolve(&home.env()).unwrap(), None);
        // No home, no DOCKER_CONFIG.
        assert_eq!(resolve(&Env::default()).unwrap(), None);
        // A context without a docker host: the default daemon.
        home.current("empty").context("empty", "");
        assert_eq!(resolve(&home.env()).unwrap(), None);
    }

    fn config_error(env: &Env) -> String {
        match resolve(env) {
            Err(Error::Config(text)) => text,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn a_context_that_cannot_be_used_is_an_error_naming_it() {
        let home = Home::new();
        home.current("gone");
        let text = config_error(&home.env());
        assert!(
            text.contains("Docker context \"gone\"")
                && text.contains("currentContext in")
                && text.contains(&digest_of("gone")),
            "{text}"
        );

        home.current("ssh").context("ssh", "ssh://me@build-host");
        let text = config_error(&home.env());
        assert!(text.contains("ssh://me@build-host"), "{text}");

        home.current("tls").context("tls", "tcp://192.0.2.7:2376");
        let tls = home
            .docker()
            .join("contexts/tls")
            .join(digest_of("tls"))
            .join("docker");
        std::fs::create_dir_all(&tls).unwrap();
        std::fs::write(tls.join("ca.pem"), "").unwrap();
        let text = config_error(&home.env());
        assert!(
            text.contains("TLS") && text.contains("--docker-host"),
            "{text}"
        );

        let meta = home.docker().join("contexts/meta").join(digest_of("bad"));
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(meta.join("meta.json"), "[").unwrap();
        home.current("bad");
        assert!(config_error(&home.env()).contains("is not a context"));

        let env = Env {
            docker_context: Some("laptop".into()),
            ..Env::default()
        };
        assert!(config_error(&env).contains("HOME"));
    }
}
