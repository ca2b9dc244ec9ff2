//! Running the real `verge` binary and other programs in tests, and talking HTTP/1.1 to
//! them over a plain socket, so the tests need no client library and see exactly the bytes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use verge_core::Config;

pub fn verge(config: &Config, dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_verge"));
    command.current_dir(dir).env("RUST_LOG", "warn");
    // Only what this test chooses: no stray VERGE_*, DATABASE_URL or REDIS_URL.
    for (name, _) in std::env::vars() {
        if name.starts_with("VERGE_") || name == "DATABASE_URL" || name == "REDIS_URL" {
            command.env_remove(name);
        }
    }
    if let Some(url) = &config.database_url {
        command.env("DATABASE_URL", url.expose_secret());
    }
    if let Some(url) = &config.redis_url {
        command.env("REDIS_URL", url.expose_secret()).env("VERGE_REDIS_PREFIX", &config.redis_prefix);
    }
    command
}

/// A child process that is stopped when the test ends, however it ends, so a failing test
/// never leaves servers behind.
pub struct Running(pub Child);

impl Running {
    /// SIGTERM, then its exit status; fails the test if it takes over 10 s.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        terminate(&mut self.0)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `verge dev` (core and edge on free ports) and returns it with the lines it
/// printed up to its prompt.
pub fn start_dev(mut command: Command) -> (Running, Vec<String>) {
    command.args(["dev", "--port", "0", "--edge-port", "0"]);
    start_until(command, |line| line.starts_with("Press Ctrl-C"))
}

/// Starts `command` and collects its stdout lines until one satisfies `ready`.
pub fn start_until(mut command: Command, ready: impl Fn(&str) -> bool) -> (Running, Vec<String>) {
    // stderr is left as the caller set it (inherited unless redirected).
    let mut child =
        command.stdout(Stdio::piped()).spawn().unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    // Generous: the first start in a fresh checkout may build the edge component and host.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            child.kill().ok();
            child.wait().ok();
            panic!("{command:?} never became ready; printed {lines:?}");
        };
        let done = ready(&line);
        lines.push(line);
        if done {
            return (Running(child), lines);
        }
    }
}

/// Where a `verge dev` answers, as it printed: the core (without `/v1`), the edge (without
/// its health path) and the admin key.
pub struct Printed {
    pub core: String,
    pub edge: String,
    pub key: String,
}

pub fn printed(lines: &[String]) -> Printed {
    Printed {
        core: field(lines, "core API").trim_end_matches("/v1").to_owned(),
        edge: field(lines, "edge").trim_end_matches("/__verge/health").to_owned(),
        key: field(lines, "admin key").to_owned(),
    }
}

pub fn field<'a>(lines: &'a [String], label: &str) -> &'a str {
    let line =
        lines.iter().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("no {label} in {lines:?}"));
    line.trim_start()[label.len()..].split_whitespace().next().unwrap()
}

/// A minimal HTTP/1.1 exchange, so the test needs no client library.
pub fn http_get(base: &str, path: &str, key: Option<&str>) -> (u16, String) {
    let address = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    let auth = key.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("the process did not exit within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An HTTP response as the bytes on the wire say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// Lower-cased names, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with `Connection: close`; understands chunked replies.
pub fn http(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let address = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(address).unwrap_or_else(|err| panic!("connect {address}: {err}"));
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // A `host` among `headers` replaces the address as the Host header.
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {address}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_owned() };
    Reply { status, headers, body }
}

pub fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

/// A loopback port nothing listens on, never one this process handed out before: two
/// tests of one binary asking at once could otherwise be given the same one. (Another
/// process may still take it before the server binds; `PrivateRedis` checks that it
/// answers itself.)
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(port) {
            return port;
        }
    }
}

/// Waits until something answers HTTP on `base`.
pub fn wait_for_http(base: &str, path: &str, within: Duration) {
    let deadline = Instant::now() + within;
    let address = base.trim_start_matches("http://").to_owned();
    loop {
        if TcpStream::connect(&address).is_ok() && http(base, "GET", path, &[], "").status != 0 {
            return;
        }
        assert!(Instant::now() < deadline, "nothing answered on {base} within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The workspace root (tests run from `core/`).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// A core started with `verge dev --no-edge`, and an `events:ingest` key made over its API
/// for the edges under test.
pub struct CoreForEdges {
    pub _process: Running,
    pub url: String,
    pub admin: String,
    pub ingest_key: String,
}

impl CoreForEdges {
    /// An admin API call; the status and the JSON answer.
    pub fn call(&self, method: &str, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let auth = format!("Bearer {}", self.admin);
        let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
        let reply = http(&self.url, method, path, &headers, &body.to_string());
        (reply.status, serde_json::from_str(&reply.body).unwrap_or(serde_json::Value::Null))
    }
}

pub fn start_core_for_edges(config: &Config, work: &Path) -> CoreForEdges {
    start_core_for_edges_with(config, work, &[])
}

/// [`start_core_for_edges`] with extra environment for the core.
pub fn start_core_for_edges_with(config: &Config, work: &Path, env: &[(&str, &str)]) -> CoreForEdges {
    let mut command = verge(config, work);
    command.args(["dev", "--no-edge", "--port", "0"]).envs(env.iter().copied());
    // Edges under test are reached as 127.0.0.1: that is where short links live.
    command.env("VERGE_LINKS_DEFAULT_DOMAIN", "127.0.0.1");
    let (process, lines) = start_until(command, |line| line.starts_with("Press Ctrl-C"));
    let url = field(&lines, "core API").trim_end_matches("/v1").to_owned();
    // A restarted core prints no new admin key; a test that restarts one configures it.
    let admin = match env.iter().find(|(name, _)| *name == "VERGE_ADMIN_KEY") {
        Some((_, key)) => (*key).to_owned(),
        None => field(&lines, "admin key").to_owned(),
    };
    let created = http(
        &url,
        "POST",
        "/v1/keys",
        &[("authorization", &format!("Bearer {admin}")), ("content-type", "application/json")],
        r#"{"name":"edges under test","scopes":["events:ingest"]}"#,
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let ingest_key =
        serde_json::from_str::<serde_json::Value>(&created.body).unwrap()["token"].as_str().unwrap().to_owned();
    CoreForEdges { _process: process, url, admin, ingest_key }
}

/// `verge publish --target local` into `<work>/store`, which it returns.
pub fn publish_local(config: &Config, work: &Path) -> std::path::PathBuf {
    let store = work.join("store");
    let published = verge(config, work).args(["publish", "--target", "local", "--out"]).arg(&store).output().unwrap();
    assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));
    store
}

/// Starts `verge edge serve` over `store`, reporting to `core`, with extra environment for
/// the host; returns it and its base URL.
pub fn serve_edge(
    config: &Config,
    work: &Path,
    store: &Path,
    core: &CoreForEdges,
    env: &[(&str, &str)],
) -> (Running, String) {
    serve_edge_with(config, work, &["--store", store.to_str().unwrap()], core, env)
}

/// Starts `verge edge serve --native`, over `store` or (without one) the Redis that
/// VERGE_EDGE_REDIS_URL in `env` names.
pub fn serve_native(
    config: &Config,
    work: &Path,
    store: Option<&Path>,
    core: &CoreForEdges,
    env: &[(&str, &str)],
) -> (Running, String) {
    let mut args = vec!["--native"];
    if let Some(store) = store {
        args.extend(["--store", store.to_str().unwrap()]);
    }
    serve_edge_with(config, work, &args, core, env)
}

fn serve_edge_with(
    config: &Config,
    work: &Path,
    args: &[&str],
    core: &CoreForEdges,
    env: &[(&str, &str)],
) -> (Running, String) {
    let mut command = verge(config, work);
    command
        .args(["edge", "serve", "--listen", "127.0.0.1:0", "--core-url", &core.url])
        .args(args)
        .env("VERGE_EDGE_INGEST_KEY", &core.ingest_key)
        .envs(env.iter().copied());
    let (process, lines) = start_until(command, |line| line.starts_with("edge serving"));
    let url = lines.last().unwrap().split_whitespace().nth(2).unwrap().trim_end_matches("/__verge/health").to_owned();
    (process, url)
}

/// Polls the `data` of the core's stored events of `kind` until `done` holds of them,
/// failing the test with what arrived if that takes longer than `within`.
/// The database of a core started by [`verge`] in `work` (its SQLite file lives in the
/// default data directory there; on `services`, the configured PostgreSQL).
pub async fn core_database(config: &Config, work: &Path) -> verge_core::db::Database {
    verge_core::db::Database::connect(&Config { data_dir: work.join("verge-data"), ..config.clone() }).await.unwrap()
}

pub async fn wait_for_events(
    config: &Config,
    work: &Path,
    kind: &str,
    within: Duration,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let db = core_database(config, work).await;
    let deadline = Instant::now() + within;
    loop {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT data FROM events WHERE kind = $1 ORDER BY received_at")
            .bind(kind)
            .fetch_all(db.pool())
            .await
            .unwrap();
        let data: Vec<String> = rows.into_iter().map(|(data,)| data).collect();
        if done(&data) {
            db.close().await;
            return data;
        }
        assert!(
            Instant::now() < deadline,
            "the expected {kind} events did not all arrive; got {} : {data:?}",
            data.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `done` every 20 ms, failing the test if it does not hold within `within`.
pub fn until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
