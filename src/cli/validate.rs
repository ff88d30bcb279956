//! `hookflow validate [PATH...]`: every problem of every file, one line
//! each as `FILE:LINE:COL: message`; exit 1 when there is any. Files are
//! checked for local use: a demo secret (a `??` fallback) is valid here,
//! and only `serve` on a network address refuses it.

use super::{EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE};
use crate::script::Engine;
use crate::workflow::registry;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Workflow files or folders (default ./workflows).
    pub paths: Vec<PathBuf>,
    /// Folder of Rhai scripts referenced with `file:`.
    #[arg(long, env = "HOOKFLOW_SCRIPTS", default_value = "./scripts")]
    pub scripts: PathBuf,
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
    let reg = registry::load(
        &files,
        &crate::expr::template::ProcessEnv,
        &args.scripts,
        &Engine::default(),
        crate::workflow::Serving::Local,
    );
    let mut problems = 0;
    for line in reg.issues() {
        println!("{line}");
        problems += 1;
    }
    if problems > 0 {
        eprintln!("{problems} problem(s) in {} file(s) checked", files.len());
        EXIT_CHECK_FAILED
    } else {
        eprintln!("{} workflow file(s) OK", files.len());
        EXIT_OK
    }
}
