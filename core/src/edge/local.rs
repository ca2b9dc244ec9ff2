//! Running the local edge next to the core: `verge dev` and `verge edge serve`.
//!
//! The edge is a separate program: `verge-edge-host` (deploy/local), running the Spin
//! component `verge_edge.wasm`, or with `--native` `verge-edge-native` (deploy/native), the
//! same edge application compiled natively. It is a child process rather than a library so
//! that the core never links wasmtime (a heavy build) nor the edge application, and a
//! misbehaving edge cannot take the core down. Inside a source checkout the artifacts are
//! built with cargo when missing or older than their sources, and we say so; elsewhere
//! `VERGE_EDGE_COMPONENT` and `VERGE_EDGE_HOST` (or `VERGE_EDGE_NATIVE`) name prebuilt ones.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::audit::Actor;
use crate::db::Database;
use crate::keys::{self, NewKey, Scope};

/// The wasm component and the host binary that runs it.
#[derive(Debug, Clone)]
pub(crate) struct EdgeArtifacts {
    pub(crate) component: PathBuf,
    pub(crate) host: PathBuf,
}

/// What serves the edge: the wasm component under the local host, or the native node.
#[derive(Debug, Clone)]
pub(crate) enum EdgeProgram {
    Wasm(EdgeArtifacts),
    Native(PathBuf),
}

impl EdgeProgram {
    fn binary(&self) -> &Path {
        match self {
            EdgeProgram::Wasm(artifacts) => &artifacts.host,
            EdgeProgram::Native(binary) => binary,
        }
    }

    /// What `verge dev` prints about it.
    pub(crate) fn describe(&self) -> String {
        match self {
            EdgeProgram::Wasm(artifacts) => format!("component {}", artifacts.component.display()),
            EdgeProgram::Native(binary) => format!("native, {}", binary.display()),
        }
    }
}

/// The build profile this binary was built in: the edge is built in the same one (a debug
/// `verge` in tests, release for `cargo run --release`).
const PROFILE: &str = if cfg!(debug_assertions) { "debug" } else { "release" };

/// Finds the native edge node, building it in a checkout when missing or stale.
pub(crate) async fn native_binary() -> anyhow::Result<PathBuf> {
    if let Some(binary) = std::env::var_os("VERGE_EDGE_NATIVE") {
        return Ok(binary.into());
    }
    let Some(root) = workspace_root() else {
        bail!("no native edge: this `verge` was not run from a source checkout; set VERGE_EDGE_NATIVE");
    };
    let binary = target_dir(&root).join(PROFILE).join("verge-edge-native");
    let mut args = vec!["build", "-p", "verge-native"];
    if PROFILE == "release" {
        args.push("--release");
    }
    let inputs = ["deploy/native", "deploy/kv-store", "edge", "shared-wasm", "Cargo.lock"].map(|p| root.join(p));
    build_if_stale(&root, "native edge", &binary, &inputs, &args).await?;
    Ok(binary)
}

/// The workspace this binary was built from, if it is still there.
fn workspace_root() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?.to_owned();
    root.join("deploy/local/Cargo.toml").is_file().then_some(root)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// Finds the artifacts, building them in a checkout when missing or stale.
pub(crate) async fn artifacts() -> anyhow::Result<EdgeArtifacts> {
    let from_env = (std::env::var_os("VERGE_EDGE_COMPONENT"), std::env::var_os("VERGE_EDGE_HOST"));
    if let (Some(component), Some(host)) = from_env {
        return Ok(EdgeArtifacts { component: component.into(), host: host.into() });
    }
    let Some(root) = workspace_root() else {
        bail!(
            "no edge component: this `verge` was not run from a source checkout; set VERGE_EDGE_COMPONENT \
             (verge_edge.wasm) and VERGE_EDGE_HOST (verge-edge-host), or pass --no-edge"
        );
    };
    let target = target_dir(&root);
    let artifacts = EdgeArtifacts {
        component: target.join("wasm32-wasip2/wasm-speed/verge_edge.wasm"),
        host: target.join(PROFILE).join("verge-edge-host"),
    };
    let component_inputs = [root.join("edge"), root.join("shared-wasm"), root.join("Cargo.lock")];
    build_if_stale(
        &root,
        "edge component",
        &artifacts.component,
        &component_inputs,
        &["build", "-p", "verge-edge", "--target", "wasm32-wasip2", "--profile", "wasm-speed"],
    )
    .await?;
    let mut host_args = vec!["build", "-p", "verge-local"];
    if PROFILE == "release" {
        host_args.push("--release");
    }
    build_if_stale(
        &root,
        "edge host",
        &artifacts.host,
        &[root.join("deploy/local"), root.join("deploy/kv-store"), root.join("Cargo.lock")],
        &host_args,
    )
    .await?;
    Ok(artifacts)
}

async fn build_if_stale(
    root: &Path,
    what: &str,
    artifact: &Path,
    inputs: &[PathBuf],
    args: &[&str],
) -> anyhow::Result<()> {
    let built = std::fs::metadata(artifact).and_then(|m| m.modified()).ok();
    let newest = inputs.iter().filter_map(|input| newest_source(input)).max_by_key(|(time, _)| *time);
    let reason = match (built, newest) {
        (None, _) => format!("the {what} is missing ({})", artifact.display()),
        (Some(built), Some((changed, path))) if changed > built => {
            format!("the {what} is older than {}", path.strip_prefix(root).unwrap_or(&path).display())
        }
        _ => return Ok(()),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!("{reason}: building it (cargo {})…", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(root)
        .stdin(Stdio::null())
        .status()
        .await
        .with_context(|| format!("running {}", Path::new(&cargo).display()))?;
    if !status.success() {
        bail!("building the {what} failed ({status}); see cargo's output above");
    }
    // Cargo leaves an up-to-date artifact untouched (say, after a Cargo.lock change that did
    // not affect it); mark it checked so the next start does not rebuild for nothing.
    // Read-only: the host binary may be running (another `verge dev`), and opening a running
    // executable for writing fails with ETXTBSY; the owner may set times through any fd.
    std::fs::File::open(artifact)
        .and_then(|file| file.set_modified(SystemTime::now()))
        .with_context(|| format!("{what} not found at {} after building", artifact.display()))?;
    Ok(())
}

/// The most recently modified file under `path` (a file or a directory), skipping `target`.
fn newest_source(path: &Path) -> Option<(SystemTime, PathBuf)> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_file() {
        return Some((meta.modified().ok()?, path.to_owned()));
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name() != "target")
        .filter_map(|entry| newest_source(&entry.path()))
        .max_by_key(|(time, _)| *time)
}

/// The ingest key the local edge reports with, kept in `<edge dir>/ingest.key` (mode 0600)
/// so restarts reuse it; replaced when the file is missing or its key no longer works.
/// A file others could read (group or world bits) is treated as leaked: its key is revoked
/// and a new one written, readable by the owner alone.
pub(crate) async fn dev_ingest_key(db: &Database, edge_dir: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let file = edge_dir.join("ingest.key");
    if let Ok(meta) = std::fs::metadata(&file)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            file = %file.display(),
            mode = %format!("{:o}", meta.permissions().mode() & 0o777),
            "the edge ingest key was readable by others; revoking it and writing a new one"
        );
        if let Ok(token) = std::fs::read_to_string(&file) {
            keys::revoke_token(db, token.trim(), &Actor::Cli).await?;
        }
        std::fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
    }
    if let Ok(token) = std::fs::read_to_string(&file) {
        let token = token.trim();
        if keys::active_with_scope(db, token, Scope::IngestEvents).await? {
            return Ok(token.to_owned());
        }
    }
    let created = keys::create(
        db,
        NewKey { name: "local edge (verge dev)".into(), scopes: vec![Scope::IngestEvents], expires_at: None },
        &Actor::Cli,
    )
    .await?;
    std::fs::create_dir_all(edge_dir)?;
    write_secret(&file, &created.token).with_context(|| format!("writing {}", file.display()))?;
    Ok(created.token)
}

fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(secret.as_bytes())
}

/// How to run the host.
#[derive(Debug)]
pub(crate) struct HostOptions<'a> {
    pub(crate) program: &'a EdgeProgram,
    /// The local edge store; `None` for a native node reading Redis (VERGE_EDGE_REDIS_URL).
    pub(crate) store: Option<&'a Path>,
    pub(crate) listen: std::net::SocketAddr,
    pub(crate) core_url: Option<&'a str>,
    /// Passed through the environment, never the command line.
    pub(crate) ingest_key: Option<&'a str>,
}

/// A running edge host.
#[derive(Debug)]
pub(crate) struct EdgeHost {
    child: Child,
    pub(crate) url: String,
}

impl EdgeHost {
    /// Starts the host and waits until it listens.
    pub(crate) async fn start(options: HostOptions<'_>) -> anyhow::Result<EdgeHost> {
        let mut command = Command::new(options.program.binary());
        if let EdgeProgram::Wasm(artifacts) = options.program {
            command.arg("--component").arg(&artifacts.component);
        }
        if let Some(store) = options.store {
            command.arg("--store").arg(store);
        }
        command
            .arg("--listen")
            .arg(options.listen.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        if let Some(url) = options.core_url {
            command.arg("--core-url").arg(url);
        }
        match options.ingest_key {
            Some(key) => command.env("VERGE_EDGE_INGEST_KEY", key),
            None => command.env_remove("VERGE_EDGE_INGEST_KEY"),
        };
        let mut child = command.spawn().with_context(|| format!("starting {}", options.program.binary().display()))?;
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        // Compiling the component takes a few seconds in a debug build.
        let first = tokio::time::timeout(Duration::from_secs(120), lines.next_line()).await;
        let url = match first {
            Ok(Ok(Some(line))) => line.rsplit(' ').next().unwrap_or_default().to_owned(),
            Ok(_) => bail!("the edge host exited before listening ({})", child.wait().await?),
            Err(_) => bail!("the edge host did not start listening within 120 s"),
        };
        // Keep draining stdout so the host never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(EdgeHost { child, url })
    }

    /// Asks the host to stop (SIGTERM), then waits for it; kills it if it overruns its own
    /// shutdown: its grace (5 s by default) for connections, as long again for event sends.
    pub(crate) async fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
        }
        match tokio::time::timeout(Duration::from_secs(11), self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                self.child.kill().await?;
                Ok(self.child.wait().await?)
            }
        }
    }

    /// Resolves when the host exits on its own.
    pub(crate) async fn exited(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait().await
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[tokio::test]
    async fn an_ingest_key_file_others_can_read_is_replaced_and_its_key_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::Config { data_dir: dir.path().join("data"), ..crate::Config::default() };
        let db = Database::connect(&config).await.unwrap();
        db.migrate().await.unwrap();
        let edge = dir.path().join("edge");
        let first = dev_ingest_key(&db, &edge).await.unwrap();
        let file = edge.join("ingest.key");
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(dev_ingest_key(&db, &edge).await.unwrap(), first, "reused while private");

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let second = dev_ingest_key(&db, &edge).await.unwrap();
        assert_ne!(second, first);
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(
            !keys::active_with_scope(&db, &first, Scope::IngestEvents).await.unwrap(),
            "the exposed key is revoked"
        );
        assert!(keys::active_with_scope(&db, &second, Scope::IngestEvents).await.unwrap());
    }
}
