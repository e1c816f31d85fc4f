//! The command line: `harbormaster serve | migrate | …`. Each command loads the configuration,
//! then calls the library.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::auth::audit::{self, Actor, Outcome};
use crate::auth::{self, tokens, users};
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
    /// Scan Kubernetes manifests and `docker inspect` output offline (no database): the
    /// build-stage gate for CI.
    Scan(ScanArgs),
    /// Manage the console's users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens (for CI, scripts and Prometheus).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Periodic reviews: snapshots of posture, findings, waivers, incidents and ownership.
    #[command(subcommand)]
    Review(ReviewCommand),
    /// Scale measurements: seed a synthetic estate, put a server under load.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// Take a review now (of every team, or of one) and write it to a file; the review is also
    /// stored with its sha256, like one asked for in the console.
    Generate {
        /// A team's name; without it, the whole estate.
        #[arg(long)]
        team: Option<String>,
        /// csv (a zip with one CSV per table), json, xlsx, or html (printable).
        #[arg(long, value_enum)]
        format: ReviewFormat,
        /// Where to write the export.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReviewFormat {
    Csv,
    Json,
    Xlsx,
    Html,
}

impl From<ReviewFormat> for crate::review::Format {
    fn from(format: ReviewFormat) -> Self {
        match format {
            ReviewFormat::Csv => Self::Csv,
            ReviewFormat::Json => Self::Json,
            ReviewFormat::Xlsx => Self::Xlsx,
            ReviewFormat::Html => Self::Html,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Fill the database with a synthetic estate of Kubernetes workloads (a mix of kinds over
    /// 500 namespaces and 40 teams, one in ten risky, a rollout of a tenth for lifecycle
    /// history), written through the collector's own mapping, inventory, lifecycle and posture
    /// code, and report the ingest time. Refused on a database holding other sources.
    Seed {
        /// Workloads in all, in clusters of 10,000 (sources `bench-cluster-N`).
        #[arg(long, default_value_t = 100_000)]
        workloads: usize,
        /// Clusters written at the same time.
        #[arg(long, default_value_t = 2)]
        parallel: usize,
    },
    /// Request every console page and API list of a running server from concurrent clients and
    /// print p50 / p95 / p99 per page (and the server's peak memory with --server-pid).
    Load {
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// An API token with the viewer role or better.
        #[arg(long, env = "HARBORMASTER_TOKEN", hide_env_values = true)]
        token: String,
        /// Concurrent clients.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 30)]
        duration: u64,
        /// The server's process id on this machine, to read its peak resident memory.
        #[arg(long)]
        server_pid: Option<u32>,
    },
}

/// `harbormaster scan PATH... [--format table|json|sarif] [--fail-on SEVERITY]
/// [--profile baseline|restricted]`.
#[derive(Debug, clap::Args)]
#[command(after_help = SCAN_HELP)]
pub struct ScanArgs {
    /// Files or directories to scan: Kubernetes manifests (YAML or JSON, multi-document,
    /// `kind: List`, rendered Helm output) and `docker inspect` output. Directories are
    /// searched for *.yaml, *.yml and *.json; `-` reads standard input.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Output format: a table for people, JSON (every workload, its Pod Security Standards
    /// level and every check with its outcome), or SARIF 2.1.0 for code-scanning dashboards.
    #[arg(long, value_enum, default_value_t = ScanFormat::Table)]
    pub format: ScanFormat,
    /// Exit 1 when a finding of this severity or worse exists.
    #[arg(long, value_enum, default_value_t = FailOn::High, value_name = "SEVERITY")]
    pub fail_on: FailOn,
    /// Also exit 1 when a workload does not meet this Pod Security Standards level.
    /// `restricted` also enables the opt-in checks (user.low_uid_gid).
    #[arg(long, value_enum)]
    pub profile: Option<ScanProfile>,
    /// A registry (or registry/path prefix) images may come from; repeat for several. Default:
    /// the server's allow-list, HARBORMASTER_ALLOWED_REGISTRIES (comma-separated). Without
    /// either, store.registry_not_allowed says UNKNOWN except for deprecated registries.
    #[arg(
        long = "allow-registry",
        value_name = "HOST[/PATH]",
        env = "HARBORMASTER_ALLOWED_REGISTRIES",
        value_delimiter = ','
    )]
    pub allow_registries: Vec<String>,
}

const SCAN_HELP: &str = "\
Exit status:
  0  no finding at or above --fail-on (and every workload meets --profile)
  1  a finding at or above --fail-on exists, or a workload is below --profile
  2  usage error, an unreadable file or a malformed document (reported with its file,
     document index and line; the other documents are still scanned)

Examples:
  harbormaster scan k8s/ --fail-on high
  helm template ./chart | harbormaster scan - --format sarif > harbormaster.sarif
  docker inspect $(docker ps -aq) > containers.json
  docker info --format '{{json .}}' > docker-info.json
  harbormaster scan containers.json docker-info.json --format json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScanFormat {
    Table,
    Json,
    Sarif,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScanProfile {
    Baseline,
    Restricted,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user. There is no default password: pipe one in with --password-stdin (at least
    /// 12 characters), e.g. `printf '%s' "$PW" | harbormaster user add alice --role admin --password-stdin`.
    Add {
        /// The user name: letters, digits, '.', '_', '@' or '-'.
        name: String,
        /// viewer (read), responder (incidents, isolate / restore, waiver requests) or admin.
        #[arg(long)]
        role: auth::Role,
        /// Read the password from standard input (one trailing newline is dropped).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the users.
    List,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print it once (only its hash is kept).
    Create {
        /// A name for the token, unique among live tokens (e.g. ci, prometheus).
        #[arg(long)]
        name: String,
        /// viewer, responder, admin, or ci (may only post build and registry events).
        #[arg(long)]
        role: auth::Role,
    },
    /// List the tokens (never their values).
    List,
    /// Revoke the live token with this name.
    Revoke { name: String },
}

/// Parses the command line, runs the command and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Scan(args) = &cli.command {
        return scan(args);
    }
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
    let filter = match cli.command {
        Command::Serve => telemetry::SERVER_FILTER,
        _ => telemetry::COMMAND_FILTER,
    };
    telemetry::init(config.log_format, filter);
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Migrate => migrate(config).await,
        Command::Import { paths } => import(config, &paths).await,
        Command::Scan(ref args) => Ok(scan(args)),
        Command::User(command) => user_command(config, command).await,
        Command::Token(command) => token_command(config, command).await,
        Command::Review(command) => review_command(config, command).await,
        Command::Bench(command) => bench_command(config, command).await,
    }
}

/// The offline scan: no configuration file, no database, no async runtime.
fn scan(args: &ScanArgs) -> ExitCode {
    use crate::posture::catalog::Severity;
    use crate::posture::pss::PssLevel;
    use crate::posture::scan::{self, Format, ScanOptions};

    let profile = args.profile.map(|p| match p {
        ScanProfile::Baseline => PssLevel::Baseline,
        ScanProfile::Restricted => PssLevel::Restricted,
    });
    let mut settings = crate::posture::Settings {
        opt_in_low_uid_gid: profile == Some(PssLevel::Restricted),
        ..Default::default()
    };
    if !args.allow_registries.is_empty() {
        settings.allowed_registries = Some(args.allow_registries.clone());
    }
    let options = ScanOptions {
        paths: args.paths.clone(),
        format: match args.format {
            ScanFormat::Table => Format::Table,
            ScanFormat::Json => Format::Json,
            ScanFormat::Sarif => Format::Sarif,
        },
        fail_on: match args.fail_on {
            FailOn::Info => Severity::Info,
            FailOn::Low => Severity::Low,
            FailOn::Medium => Severity::Medium,
            FailOn::High => Severity::High,
            FailOn::Critical => Severity::Critical,
        },
        profile,
        settings,
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    match scan::run(&options, &mut stdout.lock(), &mut stderr.lock()) {
        Ok(status) => ExitCode::from(status.code()),
        Err(err) => {
            eprintln!("error: writing the report: {err}");
            ExitCode::from(2)
        }
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

/// Who a command acts as in the audit log, with the operating-system user that ran it.
fn cli_details(extra: serde_json::Value) -> serde_json::Value {
    let mut details = serde_json::Map::new();
    if let Ok(user) = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
        if !user.is_empty() {
            details.insert("os_user".into(), user.into());
        }
    }
    if let serde_json::Value::Object(extra) = extra {
        details.extend(extra);
    }
    serde_json::Value::Object(details)
}

/// The password piped to standard input, without its trailing newline.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut password = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut password)
        .context("reading the password from standard input")?;
    let password = password
        .strip_suffix('\n')
        .map(|rest| rest.strip_suffix('\r').unwrap_or(rest))
        .unwrap_or(&password);
    Ok(password.to_string())
}

fn when(at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    at.map_or_else(
        || "never".to_string(),
        |at| at.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

async fn user_command(config: Config, command: UserCommand) -> anyhow::Result<ExitCode> {
    if let UserCommand::Add {
        password_stdin: false,
        ..
    } = command
    {
        anyhow::bail!(
            "no password given: there is no default password and no prompt; pipe one in with \
             --password-stdin, e.g. printf '%s' \"$PASSWORD\" | harbormaster user add NAME --role ROLE --password-stdin"
        );
    }
    let password = match &command {
        UserCommand::Add { .. } => Some(password_from_stdin()?),
        UserCommand::List => None,
    };
    let database = Database::open(&config, Role::Command).await?;
    let result = async {
        match command {
            UserCommand::Add { name, role, .. } => {
                let password = password.unwrap_or_default();
                let mut tx = database.pool.begin().await?;
                let user = users::create(&mut *tx, &name, role, &password).await?;
                audit::record(
                    &mut *tx,
                    Actor::system("cli"),
                    "user.create",
                    &format!("user {}", user.name),
                    Outcome::Success,
                    None,
                    cli_details(serde_json::json!({ "role": user.role })),
                )
                .await?;
                tx.commit().await?;
                println!("created user {} with the {} role", user.name, user.role);
            }
            UserCommand::List => {
                let users = users::list(&database.pool).await?;
                if users.is_empty() {
                    println!("no users yet; add one with `harbormaster user add NAME --role admin --password-stdin`");
                } else {
                    println!("{:<32} {:<10} {:<9} LAST SIGN-IN", "NAME", "ROLE", "STATUS");
                    for user in users {
                        let status = if user.disabled { "disabled" } else { "active" };
                        println!(
                            "{:<32} {:<10} {:<9} {}",
                            user.name,
                            user.role,
                            status,
                            when(user.last_login_at)
                        );
                    }
                }
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    database.close().await;
    result?;
    Ok(ExitCode::SUCCESS)
}

async fn token_command(config: Config, command: TokenCommand) -> anyhow::Result<ExitCode> {
    let database = Database::open(&config, Role::Command).await?;
    let result = async {
        match command {
            TokenCommand::Create { name, role } => {
                let mut tx = database.pool.begin().await?;
                let created = tokens::create(&mut *tx, &name, role, "cli").await?;
                audit::record(
                    &mut *tx,
                    Actor::system("cli"),
                    "token.create",
                    &format!("token {}", created.token.name),
                    Outcome::Success,
                    None,
                    cli_details(serde_json::json!({ "role": created.token.role })),
                )
                .await?;
                tx.commit().await?;
                eprintln!(
                    "created token {} with the {} role; it is shown only this once, store it now:",
                    created.token.name, created.token.role
                );
                println!("{}", created.secret);
            }
            TokenCommand::List => {
                let tokens = tokens::list(&database.pool).await?;
                println!(
                    "{:<32} {:<10} {:<8} {:<20} LAST USED",
                    "NAME", "ROLE", "STATUS", "CREATED"
                );
                for token in tokens {
                    let status = if token.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "live"
                    };
                    println!(
                        "{:<32} {:<10} {:<8} {:<20} {}",
                        token.name,
                        token.role,
                        status,
                        when(Some(token.created_at)),
                        when(token.last_used_at)
                    );
                }
            }
            TokenCommand::Revoke { name } => {
                let mut tx = database.pool.begin().await?;
                let token = tokens::revoke_by_name(&mut *tx, &name, "cli").await?;
                audit::record(
                    &mut *tx,
                    Actor::system("cli"),
                    "token.revoke",
                    &format!("token {}", token.name),
                    Outcome::Success,
                    None,
                    cli_details(serde_json::json!({ "role": token.role })),
                )
                .await?;
                tx.commit().await?;
                println!("revoked token {}", token.name);
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    database.close().await;
    result?;
    Ok(ExitCode::SUCCESS)
}

async fn review_command(config: Config, command: ReviewCommand) -> anyhow::Result<ExitCode> {
    let ReviewCommand::Generate { team, format, out } = command;
    let database = Database::open(&config, Role::Command)
        .await
        .context("opening the database for the review")?;
    let result = generate_review(&config, &database.pool, team, format.into(), &out).await;
    database.close().await;
    result?;
    Ok(ExitCode::SUCCESS)
}

async fn generate_review(
    config: &Config,
    pool: &sqlx::PgPool,
    team: Option<String>,
    format: crate::review::Format,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    use crate::review::{store, worker};

    let mut tx = pool.begin().await?;
    let (review, _) = store::request(
        &mut tx,
        store::NewReview {
            team: team.clone(),
            formats: vec![format],
            trigger: "cli",
            schedule_key: None,
            requested_by: "cli".into(),
            idempotency_key: None,
        },
    )
    .await?;
    // Taken by this command, not by a server's worker.
    store::start(&mut *tx, review.id).await?;
    audit::record(
        &mut *tx,
        Actor::system("cli"),
        "review.generate",
        &format!("review {}", review.id),
        Outcome::Success,
        None,
        cli_details(serde_json::json!({ "team": team, "formats": [format] })),
    )
    .await?;
    tx.commit().await?;
    eprintln!(
        "review {}: taking the snapshot of {}",
        review.id,
        review.scope()
    );
    let review = worker::generate(pool, config, review.id).await?;
    if review.status != "succeeded" {
        anyhow::bail!(
            "review {} failed: {}",
            review.id,
            review.error.unwrap_or_default()
        );
    }
    let (path, export) = worker::export_file(pool, config, &review, format).await?;
    tokio::fs::copy(&path, out)
        .await
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "review {} ({}): {} written to {} ({} bytes, sha256 {})",
        review.id,
        review.scope(),
        format,
        out.display(),
        export.bytes,
        export.sha256
    );
    Ok(())
}

async fn bench_command(config: Config, command: BenchCommand) -> anyhow::Result<ExitCode> {
    use crate::bench::{estate, load};

    match command {
        BenchCommand::Seed {
            workloads,
            parallel,
        } => {
            let database = Database::open(&config, Role::Command).await?;
            let others: i64 = sqlx::query_scalar(
                "select count(*) from sources where not (kind = 'kubernetes' and name like 'bench-cluster-%')",
            )
            .fetch_one(&database.pool)
            .await?;
            if others > 0 {
                database.close().await;
                anyhow::bail!(
                    "this database holds {others} real sources; seed a database of its own \
                     (DATABASE_URL / --database-url)"
                );
            }
            let report = estate::seed(
                &database.pool,
                estate::SeedOptions {
                    workloads,
                    parallel,
                },
            )
            .await;
            database.close().await;
            let report = report.context("writing the synthetic estate")?;
            println!(
                "seeded {} workloads with {} pods in {} clusters: ingest and evaluation {:.1} s \
                 ({:.0} workloads/s), rollout of a tenth {:.1} s, {} lifecycle transitions, \
                 {} open findings (objects built in {:.1} s, not counted)",
                report.workloads,
                report.instances,
                report.clusters,
                report.ingest.as_secs_f64(),
                report.workloads as f64 / report.ingest.as_secs_f64().max(0.001),
                report.rollout.as_secs_f64(),
                report.transitions,
                report.findings,
                report.generate.as_secs_f64(),
            );
        }
        BenchCommand::Load {
            url,
            token,
            concurrency,
            duration,
            server_pid,
        } => {
            let options = load::LoadOptions {
                url,
                token,
                concurrency,
                duration: std::time::Duration::from_secs(duration),
                server_pid,
            };
            let report = load::run(&options).await?;
            print!("{}", load::render(&report, concurrency));
        }
    }
    Ok(ExitCode::SUCCESS)
}
