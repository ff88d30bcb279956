//! `hookflow schema`: the JSON Schema of a workflow file, with the
//! connectors of `--connectors`, so an editor completes `uses:`, each
//! action's `with:` and `provider:`.

use super::{EXIT_CHECK_FAILED, EXIT_OK};
use crate::script::Engine;
use crate::workflow::connector::Catalog;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Folder of connectors whose actions the schema completes.
    #[arg(long, env = "HOOKFLOW_CONNECTORS", default_value = "./connectors")]
    pub connectors: PathBuf,
}

pub fn run(args: SchemaArgs) -> i32 {
    let catalog = Catalog::load(&args.connectors, &Engine::default());
    for issue in catalog.issues() {
        eprintln!("{issue} (left out of the schema)");
    }
    match serde_json::to_string_pretty(&crate::workflow::schema(&catalog)) {
        Ok(text) => {
            println!("{text}");
            EXIT_OK
        }
        Err(e) => {
            eprintln!("hookflow schema: {e}");
            EXIT_CHECK_FAILED
        }
    }
}
