//! `hookflow validate [PATH...]`: every problem of every file, one line
//! each as `FILE:LINE:COL: message`; exit 1 when there is any. The
//! connector files are checked too (their problems first, in their own
//! files), and a workflow's `uses` problems are reported at its lines.
//! Files are checked for local use: a demo secret (a `??` fallback) is
//! valid here, and only `serve` on a network address refuses it.

use super::{EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE};
use crate::script::Engine;
use crate::workflow::connector::Catalog;
use crate::workflow::registry;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Workflow files or folders (default ./workflows).
    pub paths: Vec<PathBuf>,
    /// Folder of Rhai scripts referenced with `file:`.
    #[arg(long, env = "HOOKFLOW_SCRIPTS", default_value = "./scripts")]
    pub scripts: PathBuf,
    /// Folder of connectors that `uses:` steps call.
    #[arg(long, env = "HOOKFLOW_CONNECTORS", default_value = "./connectors")]
    pub connectors: PathBuf,
}

pub fn run(args: ValidateArgs) -> i32 {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("./workflows")]
    } else {
        args.paths
    };
    for p in &paths {
        if !p.exists() {
            eprintln!("hookflow validate: {} does not exist", p.display());
            return EXIT_USAGE;
        }
    }
    let files = match registry::workflow_files(&paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("hookflow validate: cannot list workflow files: {e}");
            return EXIT_USAGE;
        }
    };
    let engine = Engine::default();
    let catalog = Catalog::load(&args.connectors, &engine);
    let mut problems = 0;
    for issue in catalog.issues() {
        println!("{issue}");
        problems += 1;
    }
    let connector_files = catalog.files.len();
    let reg = registry::load(
        &files,
        &crate::expr::template::ProcessEnv,
        &args.scripts,
        Arc::new(catalog),
        &engine,
        crate::workflow::Serving::Local,
    );
    for line in reg.issues() {
        println!("{line}");
        problems += 1;
    }
    let checked = format!(
        "{} workflow file(s) and {connector_files} connector file(s)",
        files.len()
    );
    if problems > 0 {
        eprintln!("{problems} problem(s) in {checked} checked");
        EXIT_CHECK_FAILED
    } else {
        eprintln!("{checked} OK");
        EXIT_OK
    }
}
