//! PostgreSQL and Redis servers private to one test, for the fault tests that stop and
//! restart them: the run's shared servers are never disturbed.
//!
//! Both come from the machine (scripts/test installs them); a missing one fails the test
//! with what to install, never skips it. Each listens on loopback on a port of its own and
//! keeps its files in a temporary directory removed when the test ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{Running, free_port};

/// A PostgreSQL cluster of its own: `initdb` into a temporary directory, `pg_ctl` to start,
/// stop and crash it.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    pub fn start() -> PrivatePostgres {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().expect("temp dir");
        // PostgreSQL refuses to run as root; scripts/test runs as root in CI.
        if is_root() {
            run(Command::new("chown").args(["-R", "postgres"]).arg(dir.path()));
        }
        let postgres = PrivatePostgres { dir, bin, port: free_port() };
        let data = postgres.data();
        run(postgres
            .as_owner(&postgres.bin.join("initdb"))
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "-D"])
            .arg(&data));
        postgres.start_server();
        postgres
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops it the way a crash does (`-m immediate`: no checkpoint, clients cut off), waits
    /// `down`, and starts it again on the same port.
    pub fn crash_and_restart(&self, down: Duration) {
        self.pg_ctl(&["stop", "-m", "immediate"]);
        std::thread::sleep(down);
        self.start_server();
    }

    fn start_server(&self) {
        // fsync off only spares the disk: a crash of the server process alone loses nothing
        // an acknowledged commit wrote, as synchronous_commit stays on.
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("pg.log");
        let started = self
            .as_owner(&self.bin.join("pg_ctl"))
            .args(["-w", "-D"])
            .arg(self.data())
            .arg("-l")
            .arg(&log)
            .args(["-o", &options, "start"])
            .stdout(Stdio::null())
            .status()
            .expect("run pg_ctl");
        assert!(started.success(), "PostgreSQL did not start: {}", std::fs::read_to_string(&log).unwrap_or_default());
    }

    fn pg_ctl(&self, args: &[&str]) {
        run(self.as_owner(&self.bin.join("pg_ctl")).arg("-D").arg(self.data()).args(args).stdout(Stdio::null()));
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn as_owner(&self, program: &Path) -> Command {
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .as_owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["stop", "-m", "immediate"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A `redis-server` of its own, without persistence (like the shared one): a restart comes
/// back empty, the harshest case for what the core keeps there.
pub struct PrivateRedis {
    port: u16,
    server: Option<Running>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        // A port another process took between our probe and the server's bind: another.
        for _ in 0..5 {
            let mut redis = PrivateRedis { port: free_port(), server: None };
            if redis.start_server().is_ok() {
                return redis;
            }
        }
        panic!("redis-server found no free port in five tries");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills it (SIGKILL) and leaves it down until [`PrivateRedis::restart`].
    pub fn crash(&mut self) {
        if let Some(mut server) = self.server.take() {
            let child = &mut server.0;
            child.kill().expect("kill redis-server");
            child.wait().expect("reap redis-server");
        }
    }

    /// Starts it again, empty, on the same port.
    pub fn restart(&mut self) {
        if let Err(why) = self.start_server() {
            panic!("redis-server could not come back on port {}: {why}", self.port);
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every command the server runs from now on, one line each as `MONITOR` prints them.
    pub fn monitor(&self) -> (Running, std::sync::mpsc::Receiver<String>) {
        use std::io::BufRead;
        let mut child = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "monitor"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("`redis-cli` is needed (scripts/test installs it): {err}"));
        let stdout = child.stdout.take().expect("piped");
        let (lines, receiver) = std::sync::mpsc::channel();
        let mut reader = std::io::BufReader::new(stdout);
        let mut first = String::new();
        reader.read_line(&mut first).expect("redis-cli monitor answers");
        assert_eq!(first.trim(), "OK", "redis-cli monitor");
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        (Running(child), receiver)
    }

    /// A plain connection, for the test's own commands.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url()).and_then(|client| client.get_connection()).expect("connect to redis")
    }

    /// Starts the server and waits until the port answers with its process id: something
    /// else answering there (a server that took the port first) is not ours, and a test
    /// sharing another test's Redis would see that test's crashes and keys.
    fn start_server(&mut self) -> Result<(), String> {
        let mut server = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("`redis-server` is needed (scripts/test installs it): {err}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        let ours = format!("process_id:{}", server.id());
        loop {
            if let Some(status) = server.try_wait().expect("redis-server status") {
                return Err(format!("it exited ({status}); the port is taken"));
            }
            let info: Option<String> = redis::Client::open(self.url())
                .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(1)))
                .and_then(|mut conn| redis::cmd("INFO").arg("server").query(&mut conn))
                .ok();
            match info {
                Some(info) if info.lines().any(|line| line.trim() == ours) => break,
                Some(_) => {
                    let _ = server.kill();
                    let _ = server.wait();
                    return Err("another Redis answers there".into());
                }
                None => {}
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.server = Some(Running(server));
        Ok(())
    }
}

fn postgres_bin() -> PathBuf {
    let versions = std::fs::read_dir("/usr/lib/postgresql").map(|dir| {
        let mut bins: Vec<PathBuf> = dir.filter_map(Result::ok).map(|e| e.path().join("bin")).collect();
        bins.sort_by_key(|p| p.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()));
        bins
    });
    versions
        .ok()
        .and_then(|bins| bins.into_iter().rev().find(|bin| bin.join("initdb").exists()))
        .expect("PostgreSQL's server binaries are needed under /usr/lib/postgresql (scripts/test installs them)")
}

fn is_root() -> bool {
    let id = Command::new("id").arg("-u").output().expect("run id");
    String::from_utf8_lossy(&id.stdout).trim() == "0"
}

fn run(command: &mut Command) {
    let output = command.output().unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
