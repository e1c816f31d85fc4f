//! The command line: `harbormaster serve | migrate | …`. Each command loads the configuration,
//! then calls the library.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{Config, RawSettings};
use crate::db::{Database, Role};
use crate::startup::{shutdown_signal, Application};
use crate::telemetry;

#[derive(Debug, Parser)]
#[command(
    name = "harbormaster",
    version,
    about = "Container lifecycle security console: inventory, posture, ownership and incident response for Docker and Kubernetes",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: RawSettings,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the console and the API, and run the collectors.
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Load Kubernetes YAML/JSON files (multi-document, `kind: List`, `kubectl get -o yaml|json`
    /// output) into the inventory as the file source `import`.
    Import {
        /// Files to import.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<std::path::PathBuf>,
    },
}

/// Parses the command line, runs the command and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::load(&cli.settings)?;
    telemetry::init(config.log_format);
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Migrate => migrate(config).await,
        Command::Import { paths } => import(config, &paths).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    tracing::info!(database = %config.database_display(), "starting");
    let public_url = config.public_url.clone();
    let app = Application::build(config).await?;
    let addr = app.local_addr();
    tracing::info!(%addr, "listening");
    eprintln!(
        "Harbormaster is serving on {public_url} (listening on {addr}); press Ctrl-C to stop."
    );
    app.run_until_stopped(shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn migrate(config: Config) -> anyhow::Result<ExitCode> {
    let database = Database::open(&config, Role::Command)
        .await
        .context("migrating the database")?;
    let applied: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations where success")
        .fetch_one(&database.pool)
        .await?;
    database.close().await;
    println!("database is up to date ({applied} migrations applied)");
    Ok(ExitCode::SUCCESS)
}

async fn import(config: Config, paths: &[std::path::PathBuf]) -> anyhow::Result<ExitCode> {
    use crate::collect::import::Outcome;

    let database = Database::open(&config, Role::Command)
        .await
        .context("opening the database for the import")?;
    let report = crate::collect::import::import(&database.pool, paths).await;
    database.close().await;
    let report = report.context("writing the imported inventory")?;
    for (path, err) in &report.unreadable {
        println!("{}: cannot read: {err}", path.display());
    }
    for document in &report.documents {
        match &document.outcome {
            Outcome::Imported { .. } => {}
            Outcome::Skipped(why) => println!("{}: skipped: {why}", document.location),
            Outcome::Failed(why) => println!("{}: failed: {why}", document.location),
        }
    }
    println!(
        "imported {} objects ({} workloads, {} pods); {} skipped, {} failed, {} unreadable files",
        report.imported(),
        report.persisted.workloads,
        report.persisted.instances,
        report.skipped(),
        report.failed(),
        report.unreadable.len()
    );
    Ok(if report.is_failure() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
