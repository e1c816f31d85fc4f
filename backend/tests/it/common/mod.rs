//! The harness every integration test reuses.

#![allow(dead_code)]

pub mod browser;

use std::net::SocketAddr;

use harbormaster::config::Config;
use harbormaster::startup::Application;
use harbormaster::web::AppState;
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The real application, serving on a loopback port until dropped or stopped.
pub struct TestApp {
    pub addr: SocketAddr,
    pub url: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Starts the application on port 0 with the test configuration and `pool`.
    pub async fn spawn(pool: PgPool) -> Self {
        Self::spawn_with(pool, test_config(), None).await
    }

    /// Starts the application with a custom configuration and extra routes.
    pub async fn spawn_with(
        pool: PgPool,
        config: Config,
        routes: Option<axum::Router<AppState>>,
    ) -> Self {
        let mut app = Application::with_pool(config, pool.clone())
            .await
            .expect("the application builds");
        if let Some(routes) = routes {
            app = app.merge_routes(routes);
        }
        let addr = app.local_addr();
        let state = app.state().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .build()
            .expect("a client");
        Self {
            addr,
            url: format!("http://{addr}"),
            client,
            pool,
            state,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("the server answers")
    }

    /// Triggers the graceful shutdown and waits for the server to finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.handle
            .take()
            .expect("not stopped yet")
            .await
            .expect("the server task does not panic")
    }

    /// Starts the graceful shutdown without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn join(mut self) -> anyhow::Result<()> {
        self.handle
            .take()
            .expect("not joined yet")
            .await
            .expect("the server task does not panic")
    }
}

/// The configuration tests run with: loopback port 0, defaults elsewhere.
pub fn test_config() -> Config {
    Config::for_tests("postgres://unused@127.0.0.1/unused")
}

/// Parses an HTML document for structural assertions.
pub fn html(text: &str) -> scraper::Html {
    scraper::Html::parse_document(text)
}

/// The texts of every element matching `selector`.
pub fn texts(document: &scraper::Html, selector: &str) -> Vec<String> {
    let selector = scraper::Selector::parse(selector).expect("a valid selector");
    document
        .select(&selector)
        .map(|element| element.text().collect::<String>().trim().to_string())
        .collect()
}

/// Whether live tests may be skipped on this machine: only when explicitly asked, never in CI.
pub fn skip_live() -> bool {
    std::env::var("HARBORMASTER_SKIP_LIVE").as_deref() == Ok("1")
        && std::env::var("CI").as_deref() != Ok("true")
}

/// The local Docker engine's socket; panics with a clear message when there is none (set
/// `HARBORMASTER_SKIP_LIVE=1` outside CI to skip live tests instead). Returns `None` only when
/// skipping was asked for.
pub fn live_docker_socket() -> Option<&'static str> {
    const SOCKET: &str = "/var/run/docker.sock";
    if std::path::Path::new(SOCKET).exists() {
        return Some(SOCKET);
    }
    if skip_live() {
        eprintln!(
            "skipping a live Docker test: HARBORMASTER_SKIP_LIVE=1 and no engine at {SOCKET}"
        );
        return None;
    }
    panic!(
        "this test needs the machine's Docker engine at {SOCKET}, and there is none; \
         start Docker, or set HARBORMASTER_SKIP_LIVE=1 to skip live tests outside CI"
    );
}
