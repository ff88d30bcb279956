//! A private PostgreSQL for the tests: one cluster per test process,
//! started from the installed server binaries (`initdb` in a temp folder,
//! as the `postgres` user when the tests run as root, on a free loopback
//! port), and a fresh database per test. A watchdog process stops the
//! cluster (by its PID) and removes its folder once the test process is
//! gone, however it ends.
//!
//! Where no server binaries are installed the PostgreSQL variants of the
//! tests are skipped, with a note, unless `HOOKFLOW_REQUIRE_POSTGRES=1`
//! (set by `.ci/run`) makes that a failure. `HOOKFLOW_PG_BIN` names the
//! folder of the binaries when they are elsewhere.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The variable that turns a missing server into a failure.
pub const REQUIRE: &str = "HOOKFLOW_REQUIRE_POSTGRES";

pub struct Cluster {
    pub port: u16,
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub pid: u32,
}

/// The folder of the server binaries: `HOOKFLOW_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`, else where `pg_config` says.
fn find_bin() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("HOOKFLOW_PG_BIN") {
        let dir = PathBuf::from(dir);
        return dir.join("initdb").exists().then_some(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Some(bin);
    }
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    dir.join("initdb").exists().then_some(dir)
}

/// (uid, gid) of the `postgres` user, when the tests run as root.
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&"postgres"))
            .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
    })
}

fn command(bin: &Path, name: &str, user: Option<(u32, u32)>) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(bin.join(name));
    if let Some((uid, gid)) = user {
        c.uid(uid).gid(gid);
    }
    c.env_remove("PGDATA").env("LC_ALL", "C");
    c
}

/// A loopback port free at the moment of asking, for a program that takes
/// its port as a flag (the private PostgreSQL, chromedriver). Another
/// process can be given it before that program binds it: callers try again
/// on another port when theirs was taken.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Start a private cluster. `durable`: with `fsync` (for measurements);
/// otherwise without, as the tests stop hookflow, never the database.
fn start(durable: bool) -> Result<Cluster, String> {
    let bin = find_bin().ok_or("no PostgreSQL server binaries (initdb, postgres) are installed")?;
    let user = run_as();
    if user.is_none() && unsafe { libc::getuid() } == 0 {
        return Err("running as root and there is no `postgres` user to run the server as".into());
    }
    let dir = tempfile::Builder::new()
        .prefix("hookflow-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let data = dir.join("data");
    std::fs::create_dir(&data).map_err(|e| e.to_string())?;
    if let Some((uid, gid)) = user {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        std::os::unix::fs::chown(&data, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    }
    let out = command(&bin, "initdb", user)
        .args([
            "-D",
            &data.display().to_string(),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ])
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // A free port can be taken by another test's server between the probe
    // and the postmaster's bind; the postmaster then exits, and the next
    // attempt takes another port.
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port();
        match launch(&bin, &data, &dir, user, port, durable)? {
            Launch::Ready(pid) => {
                return Ok(Cluster {
                    port,
                    bin,
                    dir,
                    pid,
                })
            }
            Launch::Exited(status) => {
                last = format!("the postmaster on port {port} exited ({status})")
            }
        }
    }
    Err(format!("the private PostgreSQL did not start: {last}"))
}

enum Launch {
    Ready(u32),
    Exited(std::process::ExitStatus),
}

/// Start the postmaster on `port` with a watchdog, and wait until it
/// answers or exits.
fn launch(
    bin: &Path,
    data: &Path,
    dir: &Path,
    user: Option<(u32, u32)>,
    port: u16,
    durable: bool,
) -> Result<Launch, String> {
    // Tests stop hookflow, never the database: fsync buys nothing there and
    // costs the shared disk. Commits stay synchronous (what hookflow checks).
    let mut cmd = command(bin, "postgres", user);
    cmd.args(["-D", &data.display().to_string(), "-p", &port.to_string()])
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            &format!("unix_socket_directories={}", data.display()),
        ])
        .args([
            "-c",
            "max_connections=400",
            "-c",
            "shared_buffers=128MB",
            "-c",
            "log_min_messages=fatal",
        ]);
    if !durable {
        cmd.args(["-c", "fsync=off", "-c", "full_page_writes=off"]);
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("postgres: {e}"))?;
    let pid = child.id();
    // The watchdog: once this process is gone, stop the server (fast
    // shutdown, by its PID), wait for it, remove the folder.
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; kill -INT {pid} 2>/dev/null; \
         n=0; while kill -0 {pid} 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done; \
         kill -KILL {pid} 2>/dev/null; rm -rf '{dir}'",
        me = std::process::id(),
        dir = dir.display()
    );
    // In a process group of its own: it outlives a kill of the test's group.
    use std::os::unix::process::CommandExt;
    let mut watchdog = Command::new("sh")
        .process_group(0)
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("the watchdog: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            // Its postmaster is gone: this watchdog has nothing to stop,
            // and the folder stays for the next attempt.
            let _ = watchdog.kill();
            let _ = watchdog.wait();
            return Ok(Launch::Exited(status));
        }
        let ready = command(bin, "pg_isready", None)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            std::mem::forget(child);
            std::mem::forget(watchdog);
            return Ok(Launch::Ready(pid));
        }
        if Instant::now() > deadline {
            return Err("the private PostgreSQL did not start within 30s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The cluster of this test process, started on first use; `None` (after a
/// note) where there is no server to start and none is required.
pub fn cluster() -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(|| start(false)) {
        Ok(c) => Some(c),
        Err(e) => {
            if std::env::var(REQUIRE).is_ok_and(|v| v == "1") {
                panic!("PostgreSQL is required ({REQUIRE}=1) but cannot be started: {e}");
            }
            eprintln!("skipping a PostgreSQL test: {e} (set {REQUIRE}=1 to make this a failure)");
            None
        }
    }
}

/// A cluster of its own that syncs to disk as a production one does (for
/// the load benchmark); stopped by its watchdog like the other.
pub fn durable_cluster() -> Result<Cluster, String> {
    start(true)
}

impl Cluster {
    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// A fresh, empty database; its URL.
    pub fn fresh_database(&self) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let out = command(&self.bin, "psql", None)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args([
                "-v",
                "ON_ERROR_STOP=1",
                "-qc",
                &format!("CREATE DATABASE {name}"),
            ])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "cannot create a test database: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(&name)
    }

    /// Run SQL in database `url` with psql; its output (unaligned, tuples
    /// only).
    /// Every value of every column of every table (partitions included) in
    /// the `hookflow` schema of database `url`, as the server hands it to
    /// a client (unaligned: no quoting or escaping of its own), each with
    /// where it came from: what a search of the PostgreSQL store reads.
    pub fn table_values(&self, url: &str) -> Vec<(String, Vec<u8>)> {
        let columns = self.psql(
            url,
            "SELECT c.relname || '.' || a.attname FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_attribute a ON a.attrelid = c.oid
              WHERE n.nspname = 'hookflow' AND c.relkind IN ('r', 'p')
                AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY 1",
        );
        columns
            .lines()
            .map(|place| {
                let (table, column) = place.split_once('.').expect("table.column");
                let out = command(&self.bin, "psql", None)
                    .args([url, "-v", "ON_ERROR_STOP=1", "-AtXq", "-c"])
                    .arg(format!(
                        "SELECT \"{column}\"::text FROM hookflow.\"{table}\""
                    ))
                    .output()
                    .expect("psql runs");
                assert!(
                    out.status.success(),
                    "psql failed on {place}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                (format!("table {place}"), out.stdout)
            })
            .collect()
    }

    pub fn psql(&self, url: &str, sql: &str) -> String {
        let out = command(&self.bin, "psql", None)
            .args([url, "-v", "ON_ERROR_STOP=1", "-AtXqc", sql])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql failed on {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}
