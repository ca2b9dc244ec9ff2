//! `verge flags …`: import and export an environment's flags as flagd JSON, and make OFREP
//! client keys, working on the database directly (like `verge keys`). A running core's
//! publisher picks the change up from the outbox within half a second.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use crate::audit::Actor;
use crate::config::Config;
use crate::db::Database;

#[derive(Debug, Subcommand)]
pub enum FlagsCommand {
    /// Replace an environment's flags with a flagd flag-set file (created if missing).
    Import {
        #[arg(long, default_value = "default")]
        project: String,
        #[arg(long = "env", value_name = "ENV")]
        environment: String,
        /// The flagd JSON file (`-` for standard input).
        file: PathBuf,
        /// Keep flags whose targeting cannot be used (they answer PARSE_ERROR, as in
        /// flagd); without it such a file is refused with every problem listed.
        #[arg(long)]
        keep_broken: bool,
    },
    /// Print an environment's flags as a flagd flag set.
    Export {
        #[arg(long, default_value = "default")]
        project: String,
        #[arg(long = "env", value_name = "ENV")]
        environment: String,
    },
    /// Create an OFREP client key for an environment and print its token once.
    ClientKey {
        #[arg(long, default_value = "default")]
        project: String,
        #[arg(long = "env", value_name = "ENV")]
        environment: String,
        /// What uses it, e.g. `web app`.
        #[arg(long, default_value = "cli")]
        name: String,
    },
}

#[allow(clippy::print_stdout, reason = "printing is the CLI's job")]
pub(crate) async fn run(config: Config, command: FlagsCommand) -> anyhow::Result<()> {
    let db = Database::connect(&config).await?;
    db.migrate().await?;
    let problem = |err: crate::error::ApiError| anyhow::anyhow!("{err}");
    match command {
        FlagsCommand::Import { project, environment, file, keep_broken } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading standard input")?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
            };
            let document: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
            let mut conn = db.pool().acquire().await?;
            if super::load(&mut conn, &project, &environment).await.is_err() {
                drop(conn);
                super::create_environment(&db, &project, &environment, &Actor::Cli).await.map_err(problem)?;
                println!("created environment {project}/{environment}");
            }
            let (imported, broken) = super::import(&db, &project, &environment, document, keep_broken, &Actor::Cli)
                .await
                .map_err(problem)?;
            println!("imported {} flags into {project}/{environment}", imported.flags);
            for flag in broken {
                println!("kept broken (answers PARSE_ERROR): {}: {}", flag.field, flag.message);
            }
        }
        FlagsCommand::Export { project, environment } => {
            let mut conn = db.pool().acquire().await?;
            let (_, document) = super::load(&mut conn, &project, &environment).await.map_err(problem)?;
            println!("{}", serde_json::to_string_pretty(&document)?);
        }
        FlagsCommand::ClientKey { project, environment, name } => {
            let (key, token) =
                super::create_client_key(&db, &project, &environment, &name, &Actor::Cli).await.map_err(problem)?;
            println!("created {} for {project}/{environment}", key.id);
            println!("token: {token}");
            println!("(shown once: store it now)");
        }
    }
    db.close().await;
    Ok(())
}
