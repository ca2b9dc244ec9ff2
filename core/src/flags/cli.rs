//! `verge flags …`: import and export an environment's flags as flagd JSON, and make OFREP
//! client keys, working on the database directly (like `verge keys`). A running core's
//! publisher picks the change up from the outbox within half a second.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use super::changes::{Change, apply_directly};
use crate::audit::Actor;
use crate::config::Config;
use crate::db::Database;

#[derive(Debug, Subcommand)]
pub enum FlagsCommand {
    /// Replace an environment's flags with a flagd flag-set file (created if missing). In a
    /// protected environment this proposes a change request for a key holder to approve.
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
            let existing = super::load(&mut conn, &project, &environment).await.ok();
            drop(conn);
            let change = Change::Import { document, keep_broken };
            let env = (project.as_str(), environment.as_str());
            match existing {
                Some((found, _)) if found.protected => {
                    let proposal = super::requests::NewChange::new(vec![change], "verge flags import");
                    let request =
                        super::requests::propose_changes(&db, env, proposal, &Actor::Cli).await.map_err(problem)?;
                    println!("{project}/{environment} is protected: proposed change request {}", request.id());
                    println!("a key holder approves it with POST /v1/flags/changes/{}/approve", request.id());
                }
                found => {
                    if found.is_none() {
                        super::create_environment(&db, &project, &environment, false, &Actor::Cli)
                            .await
                            .map_err(problem)?;
                        println!("created environment {project}/{environment}");
                    }
                    let committed = apply_directly(&db, env, vec![change], &Actor::Cli).await.map_err(problem)?;
                    println!("imported {} flags into {project}/{environment}", committed.environment.flags);
                    for flag in committed.broken {
                        println!("kept broken (answers PARSE_ERROR): {}: {}", flag.field, flag.message);
                    }
                }
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
