//! `hookflow`: clap → `cli::<command>` → exit code.

/// mimalloc: under load, glibc's malloc spent a quarter of the server's CPU
/// in its own locks and consolidation (sled allocates on one thread and
/// frees on another). See [`tune_memory`] for how memory is kept low, and
/// [`hookflow::alloc`] for the log buffers it keeps.
#[global_allocator]
static GLOBAL: hookflow::alloc::Allocator = hookflow::alloc::Allocator;

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e`, which the Rust
/// bindings do not name. The test below fails if the number stops naming it.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory waits before it goes back to the OS on a node
/// whose store is PostgreSQL, in ms. Such a node keeps no store in memory
/// (about 40 MB under the load bench), and with the 1 ms that keeps a sled
/// server small it faulted a page back in about once per event: a tenth of
/// its CPU with two nodes on one machine. At 100 ms it takes a third of the
/// page faults for about 3 MB more (`docs/performance.md`).
const POSTGRES_PURGE_DELAY_MS: std::ffi::c_long = 100;

/// Keep memory low: no transparent huge pages for this process (with them,
/// mimalloc's arenas take 2 MiB at a time), and freed memory goes back to
/// the OS after 1 ms instead of mimalloc's default (1 s in mimalloc 3).
/// Under the load benchmark this took peak RSS from about 160 MB to about
/// 120 MB at the same throughput.
fn tune_memory() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with integer arguments only; failure leaves THP as it was.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    purge_after(1);
}

/// Freed memory goes back to the OS after `ms`.
fn purge_after(ms: std::ffi::c_long) {
    // SAFETY: a plain setter of a process-wide allocator option.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, ms);
    }
}

use clap::Parser;
use hookflow::cli::{self, Cli, Command};

fn main() {
    tune_memory();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                cli::EXIT_USAGE
            } else {
                cli::EXIT_OK
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    // Every log line goes through the secrets `serve` will load.
    let log_secrets = hookflow::secret::LogSecrets::default();
    init_logging(log_secrets.clone());
    let code = match cli.command {
        Command::Validate(args) => cli::validate::run(args),
        Command::Schema(args) => cli::schema::run(args),
        Command::Connectors(args) => cli::connectors::run(args),
        Command::Test(args) => block_on(cli::test::run(args)),
        Command::Migrate(args) => block_on(cli::migrate::run(args)),
        Command::Run(mut args) => {
            args.log_secrets = log_secrets;
            block_on(cli::run::run(args))
        }
        Command::Serve(mut config) => {
            config.log_secrets = log_secrets;
            if matches!(
                config.location(),
                Ok(hookflow::store::Location::Postgres(_))
            ) {
                purge_after(POSTGRES_PURGE_DELAY_MS);
            }
            if let Err(e) = config.check_exposure().and_then(|()| config.check_limits()) {
                eprintln!("hookflow serve: {e}");
                std::process::exit(cli::EXIT_USAGE);
            }
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("hookflow: cannot start the async runtime: {e}");
                    std::process::exit(1);
                }
            };
            match runtime.block_on(cli::serve::run(config)) {
                Ok(()) => cli::EXIT_OK,
                Err(e) => {
                    eprintln!("hookflow serve: {e:#}");
                    1
                }
            }
        }
    };
    std::process::exit(code);
}

/// Run a command's future on a fresh runtime; its value is the exit code.
fn block_on(f: impl std::future::Future<Output = i32>) -> i32 {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            eprintln!("hookflow: cannot start the async runtime: {e}");
            1
        }
    }
}

/// Log to stderr, each line with the secrets in `secrets` redacted.
fn init_logging(secrets: hookflow::secret::LogSecrets) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOOKFLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(secrets)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The purge delay is set by its number. mimalloc reads each option
    /// from the environment by its name (`MIMALLOC_PURGE_DELAY`), so a child
    /// started with that variable and asked for option `PURGE_DELAY` shows
    /// whether the number still names the purge delay (a mimalloc upgrade
    /// that renumbers its options fails here).
    #[test]
    fn the_purge_delay_option_number_names_the_purge_delay() {
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--ignored",
                "--exact",
                "tests::purge_delay_probe",
                "--nocapture",
            ])
            .env("MIMALLOC_PURGE_DELAY", "37")
            .output()
            .expect("the probe runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("purge_delay=37"),
            "option {PURGE_DELAY} did not read MIMALLOC_PURGE_DELAY: {text}"
        );
        tune_memory();
        // SAFETY: a plain getter of a process-wide allocator option.
        let delay = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        assert_eq!(delay, 1, "the purge delay is 1 ms once set");
    }

    /// Run by the test above in a child process.
    #[test]
    #[ignore = "a probe started by the_purge_delay_option_number_names_the_purge_delay"]
    fn purge_delay_probe() {
        // SAFETY: a plain getter of a process-wide allocator option.
        let delay = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        println!("purge_delay={delay}");
    }
}
