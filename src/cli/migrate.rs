//! `hookflow migrate --store URL`: create or upgrade a PostgreSQL store's
//! tables ahead of a rollout (`serve` does the same at start, one node at a
//! time).

use crate::store::postgres::schema::Migrated;
use crate::store::Location;
use clap::Args;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The PostgreSQL store: postgres://user:password@host:5432/db.
    #[arg(long, env = "HOOKFLOW_STORE", hide_env_values = true)]
    pub store: String,
}

pub async fn run(args: MigrateArgs) -> i32 {
    let url = match Location::parse(&args.store) {
        Ok(Location::Postgres(url)) => url,
        Ok(Location::Sled(path)) => {
            eprintln!(
                "hookflow migrate: sled:{} needs no migration (serve creates it); migrate takes a postgres:// URL",
                path.display()
            );
            return super::EXIT_USAGE;
        }
        Err(e) => {
            eprintln!("hookflow migrate: {e}");
            return super::EXIT_USAGE;
        }
    };
    let shown = Location::Postgres(url.clone()).to_string();
    match crate::store::postgres::migrate(&url).await {
        Ok(Migrated::Created) => {
            println!("created the hookflow tables in {shown}");
            super::EXIT_OK
        }
        Ok(Migrated::Upgraded { from }) => {
            println!(
                "upgraded the hookflow tables in {shown} from version {from} to {}",
                crate::store::postgres::schema::VERSION
            );
            super::EXIT_OK
        }
        Ok(Migrated::Current) => {
            println!("the hookflow tables in {shown} are up to date");
            super::EXIT_OK
        }
        Err(e) => {
            eprintln!("hookflow migrate: {shown}: {e}");
            1
        }
    }
}
