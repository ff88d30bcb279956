//! `serve` settings, from flags and `HOOKFLOW_*` environment variables.
//! The admin token is a [`Secret`]: printing the settings never shows it.

use crate::secret::{LogSecrets, Secret};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "HOOKFLOW_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Folder of workflow files.
    #[arg(long, env = "HOOKFLOW_WORKFLOWS", default_value = "./workflows")]
    pub workflows: PathBuf,
    /// Folder of Rhai scripts referenced with `file:`.
    #[arg(long, env = "HOOKFLOW_SCRIPTS", default_value = "./scripts")]
    pub scripts: PathBuf,
    /// Folder of connectors that `uses:` steps call.
    #[arg(long, env = "HOOKFLOW_CONNECTORS", default_value = "./connectors")]
    pub connectors: PathBuf,
    /// Folder of the sled store (the same as `--store sled:DIR`).
    #[arg(long, env = "HOOKFLOW_DATA", default_value = "./data")]
    pub data: PathBuf,
    /// Where history, the run queue and state live: `sled:DIR` (one
    /// process; the default, with `--data`) or `postgres://user:password@host:5432/db`
    /// (any number of `serve` processes on one database).
    #[arg(long, env = "HOOKFLOW_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// PostgreSQL store: how long a node's hold on a run lasts without its
    /// heartbeat; another node takes the run over after that.
    #[arg(long, env = "HOOKFLOW_LEASE", default_value = "15s", value_parser = parse_duration)]
    pub lease: Duration,
    /// PostgreSQL store: serve even if the database commits asynchronously
    /// (`synchronous_commit = off`), where a database crash can lose
    /// events already answered 202.
    #[arg(long, env = "HOOKFLOW_ACCEPT_ASYNC_COMMIT")]
    pub accept_async_commit: bool,
    /// Largest accepted inbound body (e.g. 1MiB, 512KiB, 65536).
    #[arg(long, env = "HOOKFLOW_MAX_BODY", default_value = "1MiB", value_parser = parse_size)]
    pub max_body: usize,
    /// Bytes that all inbound bodies being received at once may take
    /// together; a body that does not fit waits briefly, then gets `503`
    /// with `Retry-After`. At least `--max-body`.
    #[arg(long, env = "HOOKFLOW_MAX_INFLIGHT_BODY", default_value = "64MiB", value_parser = parse_size)]
    pub max_inflight_body: usize,
    /// Runs executed at once.
    #[arg(long, env = "HOOKFLOW_WORKERS", default_value_t = 64)]
    pub workers: usize,
    /// sled page cache bound, in MiB. 16 by default: against 32, the load
    /// bench's rounds peaked 15–20 MB lower (15 s and 60 s rounds) and the
    /// stored-history bench held 21 MB less at 200,000 runs, with acks/s
    /// and CPU per event within the noise (`docs/performance.md`).
    #[arg(long, env = "HOOKFLOW_CACHE_MB", default_value_t = 16)]
    pub cache_mb: u64,
    /// Finished events and runs older than this are packed together, many
    /// to a store entry: compressed together, and with far less for the
    /// store to keep in memory per record (sled only).
    #[arg(long, env = "HOOKFLOW_PACK_AFTER", default_value = "1m", value_parser = parse_duration)]
    pub pack_after: Duration,
    /// How long SIGTERM waits for running steps before leaving them queued.
    #[arg(long, env = "HOOKFLOW_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub grace: Duration,
    /// Events and finished runs older than this are pruned.
    #[arg(long, env = "HOOKFLOW_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub retention: Duration,
    /// When stored events and runs take more than this, the oldest are pruned.
    #[arg(long, env = "HOOKFLOW_RETENTION_SIZE", default_value = "1GiB", value_parser = parse_size)]
    pub retention_size: usize,
    /// Token that `/api` and `/ui` require (Bearer, or Basic password).
    #[arg(long, env = "HOOKFLOW_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<Secret>,
    /// Allow a non-loopback listen address without an API token (when
    /// something in front of hookflow protects `/api` and `/ui`).
    #[arg(long)]
    pub no_auth: bool,
    /// Also refuse outbound requests to loopback, private (RFC 1918), CGNAT
    /// and IPv6 unique-local addresses. Link-local and cloud metadata
    /// addresses are always refused.
    #[arg(long, env = "HOOKFLOW_DENY_PRIVATE_NETWORK")]
    pub deny_private_network: bool,
    /// Time a client has to send its request headers.
    #[arg(long, env = "HOOKFLOW_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Time a client has to send a whole webhook body.
    #[arg(long, env = "HOOKFLOW_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub body_timeout: Duration,
    /// Wall time a script (or `expr`) may take before it is stopped.
    #[arg(long, env = "HOOKFLOW_SCRIPT_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub script_timeout: Duration,
    /// Rhai operations a script may perform.
    #[arg(
        long,
        env = "HOOKFLOW_SCRIPT_MAX_OPERATIONS",
        default_value_t = 5_000_000
    )]
    pub script_max_operations: u64,
    /// Largest string, array and map a script may build (bytes / items / keys).
    #[arg(long, env = "HOOKFLOW_SCRIPT_MAX_STRING", default_value = "1MiB", value_parser = parse_size)]
    pub script_max_string: usize,
    /// How often pruning runs.
    #[arg(long, env = "HOOKFLOW_PRUNE_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub prune_interval: Duration,
    /// The longest a `delay` step may wait; a longer one fails its step.
    #[arg(long, env = "HOOKFLOW_MAX_DELAY", default_value = "30d", value_parser = parse_duration)]
    pub max_delay: Duration,
    /// The log's redactor: the server keeps it up to date with the secrets
    /// of the loaded workflows and the admin token (set by `main`).
    #[arg(skip)]
    pub log_secrets: LogSecrets,
}

impl ServeConfig {
    /// Defaults with the given folders: for tests and embedding. The
    /// connectors folder is the `connectors` folder beside the workflows.
    pub fn new(workflows: PathBuf, scripts: PathBuf, data: PathBuf) -> Self {
        ServeConfig {
            listen: "127.0.0.1:0".into(),
            connectors: workflows.with_file_name("connectors"),
            workflows,
            scripts,
            data,
            store: None,
            lease: Duration::from_secs(15),
            accept_async_commit: false,
            max_body: 1024 * 1024,
            max_inflight_body: 64 * 1024 * 1024,
            workers: 64,
            cache_mb: 16,
            pack_after: crate::store::sled::DEFAULT_PACK_AFTER,
            grace: Duration::from_secs(10),
            retention: Duration::from_secs(30 * 24 * 3600),
            retention_size: 1 << 30,
            prune_interval: Duration::from_secs(60),
            max_delay: crate::step::delay::DEFAULT_MAX_DELAY,
            script_timeout: Duration::from_secs(2),
            script_max_operations: 5_000_000,
            script_max_string: 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            api_token: None,
            no_auth: false,
            deny_private_network: false,
            log_secrets: LogSecrets::default(),
        }
    }
}

impl ServeConfig {
    /// The script sandbox these settings describe.
    pub fn script_limits(&self) -> crate::script::Limits {
        crate::script::Limits {
            max_operations: self.script_max_operations,
            max_string_size: self.script_max_string,
            wall_time: self.script_timeout,
            ..crate::script::Limits::default()
        }
    }

    /// Where the store is: `--store`, else the sled folder `--data`.
    pub fn location(&self) -> Result<crate::store::Location, String> {
        match &self.store {
            Some(s) => crate::store::Location::parse(s),
            None => Ok(crate::store::Location::Sled(self.data.clone())),
        }
    }

    /// Refuse limits that contradict each other or cannot be kept: a
    /// budget for bodies in flight smaller than one allowed body would
    /// refuse such a body forever, and its sender would retry forever; a
    /// sled store cannot keep its folder within a few MB.
    pub fn check_limits(&self) -> Result<(), String> {
        let location = self.location()?;
        let min = crate::store::sled::MIN_RETENTION_SIZE;
        if matches!(location, crate::store::Location::Sled(_)) && (self.retention_size as u64) < min
        {
            return Err(format!(
                "--retention-size {} bytes is below the least the sled store can keep to ({} MiB): sled's log \
                 keeps a few MB of segments in flight whatever the history. Use --retention-size 16MiB or more \
                 (HOOKFLOW_RETENTION_SIZE), or --retention by age for a small store.",
                self.retention_size,
                min >> 20
            ));
        }
        if self.lease < Duration::from_secs(1) {
            return Err(format!(
                "--lease {} is too short: a node renews its leases every third of it, and a lease shorter than a second \
                 would hand runs to other nodes while their owner is still at work. Use e.g. --lease 15s.",
                humantime::format_duration(self.lease)
            ));
        }
        if self.max_inflight_body < self.max_body {
            return Err(format!(
                "--max-inflight-body ({} bytes) is smaller than --max-body ({} bytes): a body of the allowed size \
                 could never be received. Raise --max-inflight-body (HOOKFLOW_MAX_INFLIGHT_BODY) or lower --max-body.",
                self.max_inflight_body, self.max_body
            ));
        }
        Ok(())
    }

    /// Refuse to expose `/api` and `/ui` to the network without a token.
    pub fn check_exposure(&self) -> Result<(), String> {
        if self.api_token.as_ref().is_some_and(|t| !t.is_empty()) || self.no_auth {
            return Ok(());
        }
        use std::net::ToSocketAddrs;
        let addrs: Vec<std::net::SocketAddr> = self
            .listen
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve the listen address {}: {e}", self.listen))?
            .collect();
        match addrs.iter().find(|a| !a.ip().is_loopback()) {
            None => Ok(()),
            Some(a) => Err(format!(
                "refusing to listen on {} ({}) without an API token: /api and /ui would be open to the network. \
                 Set HOOKFLOW_API_TOKEN (or --api-token), or pass --no-auth if something in front of hookflow protects them.",
                self.listen,
                a.ip()
            )),
        }
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|_| format!("`{s}` is not a duration; write e.g. 500ms, 10s, 5m, 24h or 7d"))
}

/// Bytes, optionally with a unit: `65536`, `512KiB`, `1MiB`, `1GiB` (KB/MB/GB
/// mean the same powers of 1024 here).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size; write e.g. 1MiB or 65536"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        _ => return Err(format!("`{s}` has an unknown unit; use KiB, MiB or GiB")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("512kb"), Ok(512 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("1 parsec").is_err());
    }
}
