//! Building and running the server: the listener, the state, the background tasks and an orderly
//! shutdown (requests in flight finish, background tasks are cancelled, then the database stops).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::db::{lease, Database, Role};
use crate::web::{self, AppState, RoutePolicy};

/// The server, bound and ready to run.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    extra_routes: Option<Router<AppState>>,
    extra_policies: Vec<RoutePolicy>,
    database: Option<Database>,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

impl Application {
    /// Opens the configured database (starting the embedded one if needed), applies the
    /// migrations and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let database = Database::open(&config, Role::Server).await?;
        let pool = database.pool.clone();
        // No user yet: print the one-time link that creates the first admin.
        crate::auth::setup::announce_if_needed(&pool, &config.public_url)
            .await
            .context("checking for a first user")?;
        Self::assemble(config, pool, Some(database)).await
    }

    /// Builds on a pool the caller owns (tests: a `#[sqlx::test]` database).
    pub async fn with_pool(config: Config, pool: PgPool) -> anyhow::Result<Self> {
        Self::assemble(config, pool, None).await
    }

    async fn assemble(
        config: Config,
        pool: PgPool,
        database: Option<Database>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.bind).await.with_context(|| {
            format!(
                "cannot listen on {} (HARBORMASTER_BIND / --bind)",
                config.bind
            )
        })?;
        // Every writer resolves owners with the configured label keys: store them. A database
        // whose migrations are not all applied yet (readiness says so) cannot take them.
        if let Err(err) = store_label_keys(&pool, &config.ownership_label_keys).await {
            tracing::warn!(error = %err, "cannot store the ownership label keys (HARBORMASTER_OWNERSHIP_LABEL_KEYS)");
        }
        apply_configured_ownership(&pool, &config).await?;
        // The first sign-in with an unknown name should not pay for this.
        tokio::task::spawn_blocking(crate::auth::password::warm_up);
        let cancel = CancellationToken::new();
        let state = AppState::new(Arc::new(config), pool, cancel.clone());
        Ok(Self {
            listener,
            state,
            extra_routes: None,
            extra_policies: Vec::new(),
            database,
            tasks: TaskTracker::new(),
            cancel,
        })
    }

    /// Adds routes beside the application's own (tests use it for instrumented handlers).
    pub fn merge_routes(mut self, routes: Router<AppState>) -> Self {
        self.extra_routes = Some(match self.extra_routes.take() {
            Some(existing) => existing.merge(routes),
            None => routes,
        });
        self
    }

    /// Adds routes with their entries in the route table (tests use it for instrumented
    /// mutating routes, which are refused without one).
    pub fn merge_routes_with_policies(
        mut self,
        routes: Router<AppState>,
        policies: Vec<RoutePolicy>,
    ) -> Self {
        self.extra_policies.extend(policies);
        self.merge_routes(routes)
    }

    /// The address actually bound (port 0 in tests becomes a real port).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then drains requests in flight, cancels the background
    /// tasks, waits for them, and stops the embedded database.
    pub async fn run_until_stopped<F>(self, shutdown: F) -> anyhow::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Self {
            listener,
            state,
            extra_routes,
            extra_policies,
            database,
            tasks,
            cancel,
        } = self;

        let app = web::router(state.clone(), extra_routes, extra_policies);
        start_background(&state, &tasks, &cancel);
        tasks.close();

        let cancel_for_signal = cancel.clone();
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing requests in flight");
            cancel_for_signal.cancel();
        })
        .await;

        cancel.cancel();
        tasks.wait().await;
        if let Some(database) = database {
            database.close().await;
        }
        served.context("the HTTP server failed")?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Creates the configuration file's teams and applies its ownership rules. A rule naming a
/// team that does not exist stops the start with a message naming it.
async fn apply_configured_ownership(pool: &PgPool, config: &Config) -> anyhow::Result<()> {
    if config.ownership_teams.is_empty() && config.ownership_rules.is_empty() {
        // Rules once in the file and now removed from it are removed too.
        let configured = sqlx::query_scalar!(
            r#"select exists(select 1 from ownership_rules where created_by = $1) as "any!""#,
            crate::ownership::store::CONFIGURED_BY
        )
        .fetch_one(pool)
        .await;
        if !matches!(configured, Ok(true)) {
            return Ok(());
        }
    }
    let mut tx = pool.begin().await?;
    let applied = crate::ownership::store::apply_configured(
        &mut tx,
        &config.ownership_teams,
        &config.ownership_rules,
    )
    .await
    .map_err(|err| {
        anyhow::anyhow!("ownership.rules / ownership.teams in the configuration: {err}")
    })?;
    tx.commit().await?;
    if let Some(resolution) = applied {
        tracing::info!(
            ?resolution,
            "ownership rules of the configuration applied; owners resolved again"
        );
    }
    Ok(())
}

/// Writes the configured ownership label keys; owners are resolved again when they changed.
async fn store_label_keys(pool: &PgPool, keys: &[String]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    if let Some(resolution) = crate::ownership::store::apply_label_keys(&mut tx, keys).await? {
        tracing::info!(
            ?resolution,
            "ownership label keys changed; owners resolved again"
        );
    }
    tx.commit().await
}

/// Starts the supervised background loops (collectors, schedulers); each stops when `cancel`
/// fires and is awaited before the database closes. With several replicas on one database, each
/// source is collected and each singleton loop run by the replica holding its lease
/// ([`crate::db::lease`]); the incident action queue is shared.
fn start_background(state: &AppState, tasks: &TaskTracker, cancel: &CancellationToken) {
    crate::collect::docker::spawn(state.pool.clone(), state.config.clone(), tasks, cancel);
    crate::collect::kubernetes::spawn(&state.config, &state.pool, tasks, cancel);
    // Loops that must run on one replica only hold a `job:` lease.
    let pool = state.pool.clone();
    tasks.spawn(lease::run_while_held(
        state.pool.clone(),
        "job:waivers".into(),
        lease::replica_id().into(),
        state.config.lease_ttl,
        cancel.clone(),
        move |held| crate::findings::waivers::run(pool.clone(), held),
    ));
    crate::findings::trend::spawn(state.pool.clone(), tasks, cancel);
    crate::findings::summary::spawn(state.pool.clone(), tasks, cancel);
    crate::supply::store::spawn(state.pool.clone(), &state.config, tasks, cancel);
    crate::incident::spawn(state.pool.clone(), state.config.clone(), tasks, cancel);
    crate::runtime::drift::spawn(state.pool.clone(), state.config.clone(), tasks, cancel);
    crate::notify::spawn(state.pool.clone(), state.config.clone(), tasks, cancel);
    crate::review::worker::spawn(state.pool.clone(), state.config.clone(), tasks, cancel);
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
