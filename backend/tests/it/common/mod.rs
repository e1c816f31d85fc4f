//! The harness every integration test reuses.

#![allow(dead_code)]

pub mod browser;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use harbormaster::auth::{tokens, users, Role};
use harbormaster::config::Config;
use harbormaster::startup::Application;
use harbormaster::web::{AppState, RoutePolicy};
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
    viewer: tokio::sync::OnceCell<Browser>,
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
        Self::spawn_with_policies(pool, config, routes, Vec::new()).await
    }

    /// Starts the application with extra routes and their entries in the route table (a
    /// mutating route without one is refused).
    pub async fn spawn_with_policies(
        pool: PgPool,
        config: Config,
        routes: Option<axum::Router<AppState>>,
        policies: Vec<RoutePolicy>,
    ) -> Self {
        let mut app = Application::with_pool(config, pool.clone())
            .await
            .expect("the application builds");
        if let Some(routes) = routes {
            app = app.merge_routes_with_policies(routes, policies);
        }
        let addr = app.local_addr();
        let state = app.state().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        let client = new_client();
        Self {
            addr,
            url: format!("http://{addr}"),
            client,
            pool,
            state,
            stop: Some(stop),
            handle: Some(handle),
            viewer: tokio::sync::OnceCell::new(),
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

    /// A GET as a signed-in viewer (one viewer per app, signed in on first use): the least a
    /// reader of the console and API needs.
    pub async fn viewer_get(&self, path: &str) -> reqwest::Response {
        self.viewer
            .get_or_init(|| self.login_as(Role::Viewer))
            .await
            .get(path)
            .await
    }

    /// Creates an account directly in the database; returns its id.
    pub async fn create_user(&self, name: &str, role: Role, password: &str) -> i64 {
        users::create(&self.pool, name, role, password)
            .await
            .expect("the user is created")
            .id
    }

    /// Signs in through the real sign-in form and returns the browser holding the session.
    /// Panics when the sign-in fails.
    pub async fn login(&self, name: &str, password: &str, role: Role) -> Browser {
        let client = new_client();
        let response = client
            .post(self.url("/login"))
            .form(&[("name", name), ("password", password), ("next", "/")])
            .send()
            .await
            .expect("the server answers");
        assert_eq!(
            response.status(),
            303,
            "signing in as {name} failed: {}",
            response.text().await.unwrap_or_default()
        );
        let mut browser = Browser {
            client,
            base: self.url.clone(),
            name: name.to_string(),
            password: password.to_string(),
            role,
            csrf: String::new(),
        };
        browser.csrf = browser.fetch_csrf().await;
        browser
    }

    /// A new user with `role` (named like `admin-3`), signed in.
    pub async fn login_as(&self, role: Role) -> Browser {
        let name = format!("{role}-{}", next_number());
        let password = format!("correct horse battery {name}");
        self.create_user(&name, role, &password).await;
        self.login(&name, &password, role).await
    }

    /// A new API token with `role`; returns its secret (`hm_…`).
    pub async fn bearer_token(&self, role: Role) -> String {
        let name = format!("{role}-token-{}", next_number());
        tokens::create(&self.pool, &name, role, "tests")
            .await
            .expect("the token is created")
            .secret
    }

    /// A client that sends `Authorization: Bearer <token>` with every request.
    pub fn token_client(&self, token: &str) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("a header value"),
        );
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .build()
            .expect("a client")
    }

    /// The audit log as `(action, target, outcome)`, oldest first.
    pub async fn audit_rows(&self) -> Vec<(String, String, String)> {
        sqlx::query_as("select action, target, outcome from audit_log order by id")
            .fetch_all(&self.pool)
            .await
            .expect("the audit log reads")
    }

    /// Asserts that every mutation so far recorded its own audit row: none fell back to the
    /// generic `http.mutation` row the middleware writes for a handler that recorded nothing.
    pub async fn assert_mutations_audited(&self) {
        let generic: Vec<(String, String, String)> = self
            .audit_rows()
            .await
            .into_iter()
            .filter(|(action, _, _)| action == "http.mutation")
            .collect();
        assert!(
            generic.is_empty(),
            "mutations that recorded no audit row of their own: {generic:?}"
        );
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

fn next_number() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A client that keeps cookies and does not follow redirects (tests look at them).
pub fn new_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .expect("a client")
}

/// A signed-in browser: a client holding the session cookie, and the session's CSRF token,
/// which `post_form` and `request` send along as a real page's forms and scripts would.
pub struct Browser {
    pub client: reqwest::Client,
    pub base: String,
    pub name: String,
    pub password: String,
    pub role: Role,
    pub csrf: String,
}

impl Browser {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("the server answers")
    }

    /// Posts a form with the CSRF field added.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let mut fields: Vec<(&str, &str)> = fields.to_vec();
        fields.push(("csrf", &self.csrf));
        self.client
            .post(self.url(path))
            .form(&fields)
            .send()
            .await
            .expect("the server answers")
    }

    /// A request with the `x-csrf-token` header set (for JSON and other non-form bodies).
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("x-csrf-token", &self.csrf)
    }

    /// Posts JSON with the CSRF header.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.request(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await
            .expect("the server answers")
    }

    /// The CSRF token from the sign-out form every page carries.
    pub async fn fetch_csrf(&self) -> String {
        let response = self.get("/no-such-page-just-for-the-csrf-token").await;
        let document = html(&response.text().await.expect("a page"));
        let selector = scraper::Selector::parse("form[action='/logout'] input[name=csrf]")
            .expect("a valid selector");
        document
            .select(&selector)
            .next()
            .and_then(|input| input.value().attr("value"))
            .filter(|value| !value.is_empty())
            .expect("a signed-in page carries the CSRF token")
            .to_string()
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
