//! The command line: one file per subcommand, each returning an exit code
//! (0 ok, 1 a check failed, 2 bad usage).

pub mod connectors;
pub mod migrate;
pub mod run;
pub mod schema;
pub mod serve;
pub mod test;
pub mod validate;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "hookflow",
    version,
    about = "Webhooks in, workflows out: verify, filter, transform with Rhai, forward over HTTP"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve webhooks, the API and the UI.
    Serve(crate::config::ServeConfig),
    /// Check workflow files; prints FILE:LINE:COL: message per problem.
    Validate(validate::ValidateArgs),
    /// Run workflow test suites (*.test.yaml) with outbound HTTP mocked.
    Test(test::TestArgs),
    /// Run one event through one workflow and print the step trace.
    Run(run::RunArgs),
    /// Print the JSON Schema of a workflow file (with the connectors' actions).
    Schema(schema::SchemaArgs),
    /// List connectors, their actions and parameters.
    Connectors(connectors::ConnectorsArgs),
    /// Create or upgrade a PostgreSQL store's tables (SPEC §10).
    Migrate(migrate::MigrateArgs),
}

pub const EXIT_OK: i32 = 0;
pub const EXIT_CHECK_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
