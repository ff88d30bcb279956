//! `hookflow`: clap → `cli::<command>` → exit code.

/// jemalloc: under load, glibc's malloc spent a quarter of the server's CPU
/// in its own locks and consolidation (sled allocates on one thread and
/// frees on another), and jemalloc keeps RSS flatter than mimalloc as
/// history grows. See [`hookflow::alloc`] for its settings, the log buffers
/// it keeps and how memory is kept low ([`hookflow::alloc::tune_memory`]).
#[global_allocator]
static GLOBAL: hookflow::alloc::Allocator = hookflow::alloc::Allocator;

use clap::Parser;
use hookflow::cli::{self, Cli, Command};

fn main() {
    hookflow::alloc::tune_memory();
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
