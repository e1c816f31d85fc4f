//! The database: the connection pool, the embedded PostgreSQL launcher and the migrations.

pub mod embedded;
pub mod lease;

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use crate::config::{Config, DatabaseConfig};
pub use embedded::{EmbeddedError, EmbeddedPostgres};

/// Every migration, embedded in the binary and applied at start.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    #[error("cannot connect to the database at {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot apply the database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The pool and, when the database is embedded, the cluster that serves it.
pub struct Database {
    pub pool: PgPool,
    pub embedded: Option<EmbeddedPostgres>,
}

/// How long a caller waits for a connection before the request fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Who is asking for the embedded cluster: the server owns it for its whole life, a one-shot CLI
/// command shares a running server's cluster or starts one just for itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Command,
}

impl Database {
    /// Connects (starting the embedded cluster when no URL is configured) and applies migrations.
    pub async fn open(config: &Config, role: Role) -> Result<Self, DbError> {
        let (options, target, embedded) = match &config.database {
            DatabaseConfig::Url(url) => {
                let options: PgConnectOptions =
                    url.expose().parse().map_err(|source| DbError::Connect {
                        target: config.database_display(),
                        source,
                    })?;
                let target = format!("{}:{}", options.get_host(), options.get_port());
                (options, target, None)
            }
            DatabaseConfig::Embedded => {
                let cluster = EmbeddedPostgres::start(
                    &config.data_dir.join("postgres"),
                    config.pg_bin_dir.as_deref(),
                    role,
                )
                .await?;
                let target = cluster.describe();
                (cluster.connect_options(), target, Some(cluster))
            }
        };
        let options = options
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1))
            .application_name("harbormaster")
            // The console's queries are short; compiling them (PostgreSQL's JIT, on by default
            // for costly plans) takes longer than running them.
            .options([("jit", "off")]);
        let pool = PgPoolOptions::new()
            .max_connections(config.db_max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|source| DbError::Connect { target, source })?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool, embedded })
    }

    /// Closes the pool, then stops the embedded cluster if this process started it.
    pub async fn close(self) {
        self.pool.close().await;
        if let Some(cluster) = self.embedded {
            cluster.stop().await;
        }
    }
}

/// Whether the database answers and every embedded migration has been applied; the reason when
/// not. Used by `/readyz`.
pub async fn readiness(pool: &PgPool) -> Result<(), String> {
    let check = async {
        let applied: Vec<i64> = sqlx::query_scalar(
            "select version from _sqlx_migrations where success order by version",
        )
        .fetch_all(pool)
        .await
        .map_err(|err| format!("database unreachable: {err}"))?;
        let missing: Vec<i64> = MIGRATOR
            .iter()
            .map(|migration| migration.version)
            .filter(|version| !applied.contains(version))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("migrations not applied: {missing:?}"))
        }
    };
    match tokio::time::timeout(Duration::from_secs(3), check).await {
        Ok(result) => result,
        Err(_) => Err("database did not answer within 3 s".into()),
    }
}
