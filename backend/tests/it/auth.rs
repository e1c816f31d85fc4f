//! Console security: every route demands its role, sessions and tokens behave, sign-in is
//! throttled without telling which names exist, cross-site requests are refused, and every
//! change lands in the append-only audit log.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::routing::post;
use harbormaster::auth::{self, setup, Role};
use harbormaster::web::access::Access;
use harbormaster::web::{route_policies, RoutePolicy, CONTENT_SECURITY_POLICY};
use reqwest::Method;
use sqlx::PgPool;

use crate::common::{html, new_client, test_config, texts, Browser, TestApp};

/// A route template with its parameters filled in: ids that do not exist, a real static file.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with("{*") {
                "css/app.css".to_string()
            } else if segment.starts_with('{') {
                "999999".to_string()
            } else {
                segment.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The message of an error response, JSON or HTML.
async fn error_message(response: reqwest::Response) -> String {
    let is_json = response
        .headers()
        .get("content-type")
        .is_some_and(|value| value.to_str().unwrap().starts_with("application/json"));
    let text = response.text().await.unwrap();
    if is_json {
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    } else {
        texts(&html(&text), "main p").join(" ")
    }
}

/// The answer the fallback gives when no route matches: a route in the table that gets it is
/// not mounted.
fn is_the_fallback(status: u16, message: &str) -> bool {
    status == 404
        && (message.contains("there is no page at this address")
            || message.contains("there is nothing at this address"))
}

fn send(client: &reqwest::Client, method: &Method, url: String) -> reqwest::RequestBuilder {
    let request = client.request(method.clone(), url);
    if auth_is_mutation(method) {
        request.form(&[("probe", "1")])
    } else {
        request
    }
}

fn auth_is_mutation(method: &Method) -> bool {
    harbormaster::web::access::is_mutation(method)
}

fn csp_of(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("content-security-policy")
        .map(|value| value.to_str().unwrap().to_string())
}

/// One way of calling: a signed-in person or an API token, with the role it carries.
enum Caller {
    Session(Browser),
    Token(Role, reqwest::Client),
}

impl Caller {
    fn role(&self) -> Role {
        match self {
            Caller::Session(browser) => browser.role,
            Caller::Token(role, _) => *role,
        }
    }

    fn describe(&self) -> String {
        match self {
            Caller::Session(browser) => format!("{} session", browser.role),
            Caller::Token(role, _) => format!("{role} token"),
        }
    }

    async fn call(&self, app: &TestApp, method: &Method, path: &str) -> reqwest::Response {
        match self {
            Caller::Session(browser) => {
                let request = browser.client.request(method.clone(), app.url(path));
                let request = if auth_is_mutation(method) {
                    request.form(&[("probe", "1"), ("csrf", browser.csrf.as_str())])
                } else {
                    request
                };
                request.send().await.unwrap()
            }
            Caller::Token(_, client) => send(client, method, app.url(path)).send().await.unwrap(),
        }
    }
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn every_route_answers_anonymous_callers_and_too_low_roles_as_the_route_table_says(
    pool: PgPool,
) {
    let app = TestApp::spawn(pool).await;
    let mut callers = Vec::new();
    for role in Role::HUMAN {
        callers.push(Caller::Session(app.login_as(role).await));
    }
    for role in Role::ALL {
        let token = app.bearer_token(role).await;
        callers.push(Caller::Token(role, app.token_client(&token)));
    }

    let policies: Vec<RoutePolicy> = route_policies();
    assert!(
        policies.len() > 10,
        "the table lists the application's routes"
    );
    for policy in &policies {
        let path = concrete(policy.path);
        let what = format!("{} {}", policy.method, policy.path);

        let anonymous = send(&new_client(), &policy.method, app.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(
            csp_of(&anonymous).as_deref(),
            Some(CONTENT_SECURITY_POLICY),
            "{what}: the strict CSP on every answer"
        );
        let status = anonymous.status().as_u16();
        let location = anonymous
            .headers()
            .get("location")
            .map(|value| value.to_str().unwrap().to_string())
            .unwrap_or_default();
        match policy.access {
            Access::Public => {
                // Not the middleware's answer to a stranger (the sign-in form may still say
                // 401 to a wrong password).
                assert!(
                    !anonymous.headers().contains_key("www-authenticate"),
                    "{what} is public"
                );
                assert!(!location.starts_with("/login"), "{what} is public");
                continue;
            }
            Access::AtLeast(_) if path.starts_with("/api/") || path == "/metrics" => {
                assert_eq!(status, 401, "{what}: 401 without credentials");
                if path.starts_with("/api/") {
                    let body: serde_json::Value = anonymous.json().await.unwrap();
                    assert_eq!(body["error"]["code"], "unauthorized", "{what}");
                }
            }
            Access::AtLeast(_) => {
                assert_eq!(status, 303, "{what}: pages send strangers to sign in");
                assert!(location.starts_with("/login"), "{what}: {location}");
                if !policy.is_mutation() {
                    assert_eq!(
                        location,
                        harbormaster::web::access::login_url(&path),
                        "{what}: back to the page after signing in"
                    );
                }
            }
        }
        let Access::AtLeast(required) = policy.access else {
            unreachable!()
        };

        for caller in &callers {
            let allowed = caller.role().satisfies(required)
                && (caller.role() != Role::Ci || path.starts_with("/api/v1/events/"));
            let who = caller.describe();
            if allowed {
                // A mutation may end or change the caller's session (sign-out): use a fresh one.
                let fresh;
                let caller = match caller {
                    Caller::Session(browser) if policy.is_mutation() => {
                        fresh = Caller::Session(app.login_as(browser.role).await);
                        &fresh
                    }
                    other => other,
                };
                let response = caller.call(&app, &policy.method, &path).await;
                let status = response.status().as_u16();
                let message = error_message(response).await;
                assert!(
                    !matches!(status, 401 | 403 | 405),
                    "{what} as {who}: allowed, yet {status} {message}"
                );
                assert!(
                    !is_the_fallback(status, &message),
                    "{what} is in the route table but not mounted"
                );
            } else {
                let response = caller.call(&app, &policy.method, &path).await;
                assert_eq!(
                    csp_of(&response).as_deref(),
                    Some(CONTENT_SECURITY_POLICY),
                    "{what} as {who}"
                );
                let status = response.status().as_u16();
                let message = error_message(response).await;
                assert_eq!(status, 403, "{what} as {who}: {message}");
                assert!(
                    message.contains("role"),
                    "{what} as {who}: the refusal names the role: {message}"
                );
            }
        }
    }
    app.assert_mutations_audited().await;
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_mutating_route_missing_from_the_route_table_is_refused_even_for_admins(pool: PgPool) {
    let routes = axum::Router::new().route(
        "/test/unlisted",
        post(|| async { "done" }).get(|| async { "read" }),
    );
    let app = TestApp::spawn_with(pool, test_config(), Some(routes)).await;
    let admin = app.login_as(Role::Admin).await;
    let response = admin.post_form("/test/unlisted", &[]).await;
    assert_eq!(response.status(), 403);
    assert!(error_message(response)
        .await
        .contains("POST /test/unlisted has no access policy"));
    // Reading stays open to any signed-in person, as the brief for pages says.
    let viewer = app.login_as(Role::Viewer).await;
    assert_eq!(viewer.get("/test/unlisted").await.status(), 200);
    let rows = app.audit_rows().await;
    assert!(rows
        .iter()
        .any(|(action, target, outcome)| action == "access.denied"
            && target == "POST /test/unlisted"
            && outcome == "denied"));
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_ci_token_may_post_events_and_nothing_else(pool: PgPool) {
    let routes = axum::Router::new().route(
        "/api/v1/events/test",
        post(|| async { axum::Json(serde_json::json!({"accepted": true})) }),
    );
    let policies = vec![RoutePolicy::role(
        Method::POST,
        "/api/v1/events/test",
        Role::Ci,
    )];
    let app = TestApp::spawn_with_policies(pool, test_config(), Some(routes), policies).await;
    let ci = app.token_client(&app.bearer_token(Role::Ci).await);
    let posted = ci
        .post(app.url("/api/v1/events/test"))
        .json(&serde_json::json!({"digest": "sha256:00"}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    for path in ["/api/v1/me", "/", "/metrics"] {
        let response = ci.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 403, "{path}");
    }
    let responder = app.token_client(&app.bearer_token(Role::Responder).await);
    let refused = responder
        .post(app.url("/api/v1/events/test"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let admin = app.token_client(&app.bearer_token(Role::Admin).await);
    let response = admin
        .post(app.url("/api/v1/events/test"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "an admin may post events too");
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_mutation_that_records_nothing_still_leaves_a_generic_audit_row(pool: PgPool) {
    let routes = axum::Router::new().route("/test/forgetful", post(|| async { "done" }));
    let policies = vec![RoutePolicy::role(
        Method::POST,
        "/test/forgetful",
        Role::Viewer,
    )];
    let app = TestApp::spawn_with_policies(pool, test_config(), Some(routes), policies).await;
    let viewer = app.login_as(Role::Viewer).await;
    assert_eq!(viewer.post_form("/test/forgetful", &[]).await.status(), 200);
    let row: (String, String, String, String) = sqlx::query_as(
        "select actor, action, target, outcome from audit_log where action = 'http.mutation'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            viewer.name.clone(),
            "http.mutation".to_string(),
            "POST /test/forgetful".to_string(),
            "success".to_string()
        )
    );
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_cross_site_form_post_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let admin = app.login_as(Role::Admin).await;
    let fields = [
        ("name", "mallory"),
        ("role", "admin"),
        ("password", "a long enough password"),
    ];

    // A form on another site posting with the victim's cookie: it cannot know the token.
    let no_token = admin
        .client
        .post(admin.url("/admin/users"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 403);
    assert!(error_message(no_token).await.contains("CSRF"));

    // Even with the token, a cross-site origin is refused.
    let mut with_token = fields.to_vec();
    with_token.push(("csrf", &admin.csrf));
    for (header, value) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
        ("origin", "null"),
    ] {
        let response = admin
            .client
            .post(admin.url("/admin/users"))
            .header(header, value)
            .form(&with_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{header}: {value}");
    }
    // A wrong token and a token in JSON without the header are refused too.
    let wrong = admin
        .client
        .post(admin.url("/admin/users"))
        .form(&[("csrf", "forged"), ("name", "mallory")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);

    let created: i64 = sqlx::query_scalar("select count(*) from users where name = 'mallory'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(created, 0, "nothing was created");
    let denied = app
        .audit_rows()
        .await
        .into_iter()
        .filter(|(action, _, outcome)| action == "access.denied" && outcome == "denied")
        .count();
    assert_eq!(denied, 5, "each refusal is on record");

    // The same form from the console itself works.
    let same_site = admin
        .client
        .post(admin.url("/admin/users"))
        .header("origin", app.url(""))
        .header("sec-fetch-site", "same-origin")
        .form(&with_token)
        .send()
        .await
        .unwrap();
    assert_eq!(same_site.status(), 303);

    // The sign-in form refuses a cross-site post as well (login CSRF).
    let login = new_client()
        .post(app.url("/login"))
        .header("origin", "https://evil.example")
        .form(&[("name", "x"), ("password", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 403);
    app.assert_mutations_audited().await;
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_bearer_token_needs_no_csrf_token(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let admin = app.token_client(&app.bearer_token(Role::Admin).await);
    let response = admin
        .post(app.url("/admin/users"))
        .form(&[
            ("name", "tokenmade"),
            ("role", "viewer"),
            ("password", "a long enough password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let rows = app.audit_rows().await;
    assert!(rows.contains(&(
        "user.create".into(),
        "user tokenmade".into(),
        "success".into()
    )));
}

/// Signs in with a client that keeps no cookies, optionally sending `cookie`, and returns the
/// response with the new session cookie's value.
async fn sign_in(
    app: &TestApp,
    name: &str,
    password: &str,
    cookie: Option<&str>,
) -> (reqwest::Response, Option<String>) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut request = client
        .post(app.url("/login"))
        .form(&[("name", name), ("password", password)]);
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("hm_session={cookie}"));
    }
    let response = request.send().await.unwrap();
    let session = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| value.strip_prefix("hm_session="))
        .map(|value| value.split(';').next().unwrap().to_string());
    (response, session)
}

/// What a page answers to a bare cookie: 200, or 303 to the sign-in page.
async fn get_with_cookie(app: &TestApp, path: &str, cookie: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url(path))
        .header("cookie", format!("hm_session={cookie}"))
        .send()
        .await
        .unwrap()
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_session_id_changes_at_login_and_the_old_one_stops_working(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create_user("olga", Role::Viewer, "olga's long password")
        .await;

    // A value planted before sign-in (session fixation) is never adopted.
    let (response, first) = sign_in(&app, "olga", "olga's long password", Some("planted")).await;
    assert_eq!(response.status(), 303);
    let first = first.expect("a session cookie");
    assert_ne!(first, "planted");
    assert_eq!(get_with_cookie(&app, "/", "planted").await.status(), 303);
    assert_eq!(get_with_cookie(&app, "/", &first).await.status(), 200);

    // Signing in again from the same browser rotates the id and ends the old session.
    let (_, second) = sign_in(&app, "olga", "olga's long password", Some(&first)).await;
    let second = second.expect("a session cookie");
    assert_ne!(first, second);
    let old = get_with_cookie(&app, "/", &first).await;
    assert_eq!(old.status(), 303, "the old session is gone server-side");
    assert!(
        old.headers()
            .get_all("set-cookie")
            .iter()
            .any(|value| value.to_str().unwrap().starts_with("hm_session=;")),
        "the stale cookie is cleared"
    );
    assert_eq!(get_with_cookie(&app, "/", &second).await.status(), 200);

    // Only the hash of the session id is stored.
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("select id_hash from sessions")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, vec![auth::digest(&second)]);
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn session_cookies_are_httponly_samesite_lax_and_secure_over_tls(pool: PgPool) {
    let mut config = test_config();
    config.public_url = "https://harbormaster.example".into();
    let app = TestApp::spawn_with(pool.clone(), config, None).await;
    app.create_user("tess", Role::Viewer, "tess's long password")
        .await;
    let (response, _) = sign_in(&app, "tess", "tess's long password", None).await;
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    let max_age: u64 = cookie
        .split("Max-Age=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(max_age, 7 * 24 * 3600, "the absolute lifetime");

    let plain = TestApp::spawn(pool).await;
    let (response, _) = sign_in(&plain, "tess", "tess's long password", None).await;
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    assert!(cookie.contains("HttpOnly"));
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn sessions_end_when_idle_too_long_past_their_lifetime_or_at_sign_out(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create_user("ivan", Role::Viewer, "ivan's long password")
        .await;

    let (_, idle) = sign_in(&app, "ivan", "ivan's long password", None).await;
    let idle = idle.unwrap();
    sqlx::query(
        "update sessions set last_seen_at = now() - interval '8 hours 1 minute' where id_hash = $1",
    )
    .bind(auth::digest(&idle))
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(get_with_cookie(&app, "/", &idle).await.status(), 303);

    let (_, old) = sign_in(&app, "ivan", "ivan's long password", None).await;
    let old = old.unwrap();
    sqlx::query("update sessions set expires_at = now() - interval '1 second' where id_hash = $1")
        .bind(auth::digest(&old))
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(get_with_cookie(&app, "/", &old).await.status(), 303);

    // A session in use keeps going (last use is recorded).
    let (_, busy) = sign_in(&app, "ivan", "ivan's long password", None).await;
    let busy = busy.unwrap();
    sqlx::query("update sessions set last_seen_at = now() - interval '7 hours' where id_hash = $1")
        .bind(auth::digest(&busy))
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(get_with_cookie(&app, "/", &busy).await.status(), 200);
    let recent: bool = sqlx::query_scalar(
        "select last_seen_at > now() - interval '1 minute' from sessions where id_hash = $1",
    )
    .bind(auth::digest(&busy))
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(recent, "using the session renews its idle time");

    // Signing out deletes the session on the server: the cookie is worthless afterwards,
    // even to someone who kept a copy.
    let (_, kept) = sign_in(&app, "ivan", "ivan's long password", None).await;
    let kept = kept.unwrap();
    let page = html(
        &get_with_cookie(&app, "/", &kept)
            .await
            .text()
            .await
            .unwrap(),
    );
    let csrf = scraper::Selector::parse("form[action='/logout'] input[name=csrf]").unwrap();
    let csrf = page
        .select(&csrf)
        .next()
        .unwrap()
        .value()
        .attr("value")
        .unwrap()
        .to_string();
    let logout = |token: &str| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .post(app.url("/logout"))
            .header("cookie", format!("hm_session={kept}"))
            .form(&[("csrf", token)])
            .send()
    };
    let forged = logout("wrong").await.unwrap();
    assert_eq!(forged.status(), 403, "signing out needs the CSRF token too");
    let response = logout(&csrf).await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/login");
    assert!(response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .starts_with("hm_session=;"));
    assert_eq!(get_with_cookie(&app, "/", &kept).await.status(), 303);
    let rows = app.audit_rows().await;
    assert!(rows.contains(&("auth.logout".into(), "user ivan".into(), "success".into())));
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn failed_sign_ins_are_throttled_per_account_with_a_clear_message(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create_user("alice", Role::Admin, "alice's long password")
        .await;
    app.create_user("bob", Role::Viewer, "bob's long password")
        .await;
    for attempt in 1..=5 {
        let (response, cookie) = sign_in(&app, "alice", "guess", None).await;
        assert_eq!(response.status(), 401, "attempt {attempt}");
        assert!(cookie.is_none());
    }
    // The right password no longer helps, for a while.
    let (response, cookie) = sign_in(&app, "Alice", "alice's long password", None).await;
    assert_eq!(response.status(), 429);
    assert!(cookie.is_none());
    assert_eq!(response.headers()["retry-after"], "900");
    let page = html(&response.text().await.unwrap());
    assert_eq!(
        texts(&page, ".form-error"),
        vec!["too many failed sign-ins; try again in 15 minutes"]
    );
    // Another account from the same address is not locked out.
    let (response, _) = sign_in(&app, "bob", "bob's long password", None).await;
    assert_eq!(response.status(), 303);

    // Once the failures leave the window, alice may sign in again.
    sqlx::query("update login_failures set at = at - interval '16 minutes'")
        .execute(&app.pool)
        .await
        .unwrap();
    let (response, _) = sign_in(&app, "alice", "alice's long password", None).await;
    assert_eq!(response.status(), 303);
    let rows = app.audit_rows().await;
    assert_eq!(
        rows.iter()
            .filter(|row| row.0 == "auth.login" && row.2 == "failure")
            .count(),
        5
    );
    assert!(rows
        .iter()
        .any(|row| row.0 == "auth.login" && row.1 == "user Alice" && row.2 == "denied"));
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn failed_sign_ins_are_throttled_per_address_across_names(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create_user("carol", Role::Viewer, "carol's long password")
        .await;
    for n in 0..20 {
        let (response, _) = sign_in(&app, &format!("nobody{n}"), "guess", None).await;
        assert_eq!(response.status(), 401);
    }
    let (response, _) = sign_in(&app, "carol", "carol's long password", None).await;
    assert_eq!(response.status(), 429, "the address is throttled");
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn an_unknown_name_and_a_wrong_password_get_the_same_answer(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create_user("dave", Role::Viewer, "dave's long password")
        .await;
    // Warm up: the first verification pays for setting up the dummy hash.
    sign_in(&app, "warmup", "x", None).await;

    let mut unknown = Vec::new();
    let mut wrong = Vec::new();
    let mut answers = Vec::new();
    for n in 0..4 {
        let started = Instant::now();
        let (response, _) = sign_in(&app, &format!("nobody-{n}"), "some password", None).await;
        unknown.push(started.elapsed());
        answers.push((
            response.status(),
            texts(&html(&response.text().await.unwrap()), ".form-error"),
        ));
        let started = Instant::now();
        let (response, _) = sign_in(&app, "dave", &format!("wrong {n}"), None).await;
        wrong.push(started.elapsed());
        answers.push((
            response.status(),
            texts(&html(&response.text().await.unwrap()), ".form-error"),
        ));
    }
    for (status, message) in &answers {
        assert_eq!(*status, 401);
        assert_eq!(message, &vec![auth::login::BAD_CREDENTIALS.to_string()]);
    }
    // An unknown name costs a password verification too. Without it the answer would come
    // many times faster; allow for a noisy shared machine.
    unknown.sort();
    wrong.sort();
    let (unknown, wrong) = (unknown[1], wrong[1]);
    assert!(
        unknown.as_secs_f64() > wrong.as_secs_f64() * 0.3,
        "unknown {unknown:?} vs wrong {wrong:?}"
    );
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn a_disabled_user_is_signed_out_and_cannot_sign_in(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let admin = app.login_as(Role::Admin).await;
    let viewer = app.login_as(Role::Viewer).await;
    assert_eq!(viewer.get("/").await.status(), 200);
    let id: i64 = sqlx::query_scalar("select id from users where name = $1")
        .bind(&viewer.name)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let response = admin
        .post_form(&format!("/admin/users/{id}/disable"), &[])
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(viewer.get("/").await.status(), 303, "signed out at once");
    let (response, _) = sign_in(&app, &viewer.name, &viewer.password, None).await;
    assert_eq!(response.status(), 401);
    let page = html(&response.text().await.unwrap());
    assert_eq!(
        texts(&page, ".form-error"),
        vec![auth::login::BAD_CREDENTIALS.to_string()],
        "the same answer as a wrong password"
    );
    let response = admin
        .post_form(&format!("/admin/users/{id}/enable"), &[])
        .await;
    assert_eq!(response.status(), 303);
    let (response, _) = sign_in(&app, &viewer.name, &viewer.password, None).await;
    assert_eq!(response.status(), 303);
    app.assert_mutations_audited().await;
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_last_admin_can_neither_be_demoted_nor_disabled(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let admin = app.login_as(Role::Admin).await;
    let id: i64 = sqlx::query_scalar("select id from users where name = $1")
        .bind(&admin.name)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let demote = admin
        .post_form(&format!("/admin/users/{id}/role"), &[("role", "viewer")])
        .await;
    assert_eq!(demote.status(), 409);
    assert!(error_message(demote).await.contains("only enabled admin"));
    let disable = admin
        .post_form(&format!("/admin/users/{id}/disable"), &[])
        .await;
    assert_eq!(disable.status(), 409);

    // With a second admin, the first may step down.
    let other = app.login_as(Role::Admin).await;
    let demote = other
        .post_form(&format!("/admin/users/{id}/role"), &[("role", "responder")])
        .await;
    assert_eq!(demote.status(), 303);
    let role: String = sqlx::query_scalar("select role from users where id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(role, "responder");
    // The demotion applies to the running session at once.
    assert_eq!(admin.get("/admin/users").await.status(), 403);
    let rows = app.audit_rows().await;
    assert!(rows
        .iter()
        .any(|row| row.0 == "user.role" && row.2 == "failure"));
    assert!(rows
        .iter()
        .any(|row| row.0 == "user.role" && row.2 == "success"));
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn admins_manage_users_in_the_console_and_every_change_is_audited(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let admin = app.login_as(Role::Admin).await;

    let short = admin
        .post_form(
            "/admin/users",
            &[
                ("name", "erin"),
                ("role", "responder"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(short.status(), 422);
    let page = html(&short.text().await.unwrap());
    assert_eq!(
        texts(&page, ".form-error"),
        vec!["a password needs at least 12 characters"]
    );

    let created = admin
        .post_form(
            "/admin/users",
            &[
                ("name", "erin"),
                ("role", "responder"),
                ("password", "erin's long password"),
            ],
        )
        .await;
    assert_eq!(created.status(), 303);
    let duplicate = admin
        .post_form(
            "/admin/users",
            &[
                ("name", "ERIN"),
                ("role", "viewer"),
                ("password", "another long password"),
            ],
        )
        .await;
    assert_eq!(
        duplicate.status(),
        409,
        "names are unique regardless of case"
    );

    let page = html(
        &admin
            .get("/admin/users?done=created")
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(texts(&page, ".notice"), vec!["The user was created."]);
    assert!(texts(&page, "td.user-name").contains(&"erin".to_string()));
    let id: i64 = sqlx::query_scalar("select id from users where name = 'erin'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let stored: String = sqlx::query_scalar("select password_hash from users where id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(stored.starts_with("$argon2id$"), "{stored}");

    let erin = app
        .login("erin", "erin's long password", Role::Responder)
        .await;
    let reset = admin
        .post_form(
            &format!("/admin/users/{id}/password"),
            &[("password", "erin's new long password")],
        )
        .await;
    assert_eq!(reset.status(), 303);
    assert_eq!(
        erin.get("/").await.status(),
        303,
        "a reset ends the sessions"
    );
    app.login("erin", "erin's new long password", Role::Responder)
        .await;

    let role = admin
        .post_form(&format!("/admin/users/{id}/role"), &[("role", "viewer")])
        .await;
    assert_eq!(role.status(), 303);
    let ci = admin
        .post_form(&format!("/admin/users/{id}/role"), &[("role", "ci")])
        .await;
    assert_eq!(ci.status(), 422, "ci is for tokens only");

    let rows = app.audit_rows().await;
    for expected in [
        ("user.create", "user erin", "failure"),
        ("user.create", "user erin", "success"),
        ("user.create", "user ERIN", "failure"),
        ("user.password", "user erin", "success"),
        ("user.role", "user erin", "success"),
        ("user.role", "user erin", "failure"),
        ("auth.login", "user erin", "success"),
    ] {
        assert!(
            rows.iter()
                .any(|row| (row.0.as_str(), row.1.as_str(), row.2.as_str()) == expected),
            "{expected:?} in {rows:?}"
        );
    }
    app.assert_mutations_audited().await;
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn api_tokens_are_shown_once_stored_hashed_track_last_use_and_stop_when_revoked(
    pool: PgPool,
) {
    let app = TestApp::spawn(pool).await;
    let admin = app.login_as(Role::Admin).await;
    let created = admin
        .post_form(
            "/admin/tokens",
            &[("name", "prometheus"), ("role", "viewer")],
        )
        .await;
    assert_eq!(created.status(), 200);
    assert_eq!(created.headers()["cache-control"], "no-store");
    let page = html(&created.text().await.unwrap());
    let secret = texts(&page, "#token-secret")
        .pop()
        .expect("the token is shown");
    assert!(secret.starts_with("hm_"), "{secret}");

    let stored: Vec<u8> =
        sqlx::query_scalar("select token_hash from api_tokens where name = 'prometheus'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, auth::digest(&secret), "only the sha256 is kept");
    let list = admin.get("/admin/tokens").await.text().await.unwrap();
    assert!(!list.contains(&secret), "never shown again");
    assert_eq!(
        texts(&html(&list), "tbody tr td:nth-child(4)"),
        vec!["never"],
        "not used yet"
    );

    let client = app.token_client(&secret);
    let me: serde_json::Value = client
        .get(app.url("/api/v1/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["name"], "prometheus");
    assert_eq!(me["role"], "viewer");
    assert_eq!(me["kind"], "token");
    let metrics = client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(
        metrics.status(),
        200,
        "Prometheus scrapes with a viewer token"
    );
    let list = html(&admin.get("/admin/tokens").await.text().await.unwrap());
    assert_ne!(texts(&list, "tbody tr td:nth-child(4)"), vec!["never"]);

    let duplicate = admin
        .post_form(
            "/admin/tokens",
            &[("name", "Prometheus"), ("role", "viewer")],
        )
        .await;
    assert_eq!(duplicate.status(), 409);

    let id: i64 = sqlx::query_scalar("select id from api_tokens where name = 'prometheus'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let revoked = admin
        .post_form(&format!("/admin/tokens/{id}/revoke"), &[])
        .await;
    assert_eq!(revoked.status(), 303);
    let refused = client.get(app.url("/api/v1/me")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().contains_key("www-authenticate"));
    let bogus = app.token_client("hm_not-a-real-token");
    assert_eq!(
        bogus
            .get(app.url("/api/v1/me"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let rows = app.audit_rows().await;
    for expected in [
        ("token.create", "token prometheus", "success"),
        ("token.create", "token Prometheus", "failure"),
        ("token.revoke", "token prometheus", "success"),
    ] {
        assert!(
            rows.iter()
                .any(|row| (row.0.as_str(), row.1.as_str(), row.2.as_str()) == expected),
            "{expected:?} in {rows:?}"
        );
    }
    let audit_text: Vec<String> = sqlx::query_scalar("select details::text from audit_log")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert!(audit_text.iter().all(|details| !details.contains(&secret)));
    app.assert_mutations_audited().await;
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_audit_log_refuses_update_and_delete(pool: PgPool) {
    let id = auth::audit::record(
        &pool,
        auth::audit::Actor::system("tests"),
        "test.append",
        "nothing",
        auth::audit::Outcome::Success,
        None,
        serde_json::json!({}),
    )
    .await
    .unwrap();
    for statement in [
        "update audit_log set actor = 'someone else'",
        "delete from audit_log",
        "truncate audit_log",
    ] {
        let err = sqlx::query(statement).execute(&pool).await.unwrap_err();
        assert!(
            err.to_string().contains("append-only"),
            "{statement}: {err}"
        );
    }
    let actor: String = sqlx::query_scalar("select actor from audit_log where id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(actor, "tests");
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_audit_page_escapes_what_strangers_typed_filters_and_exports_csv(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let admin = app.login_as(Role::Admin).await;
    let evil = "<script>alert(1)</script>";
    sign_in(&app, evil, "whatever", None).await;
    sign_in(&app, "=HYPERLINK(\"http://x\")", "whatever", None).await;

    let response = admin.get("/admin/audit").await;
    assert_eq!(
        response.headers()["content-security-policy"],
        CONTENT_SECURITY_POLICY
    );
    let body = response.text().await.unwrap();
    assert!(!body.contains(evil), "escaped, never raw");
    let page = html(&body);
    let scripts = scraper::Selector::parse("script").unwrap();
    assert!(
        page.select(&scripts)
            .all(|script| script.value().attr("src").is_some()),
        "no inline script made it into the page"
    );
    let targets = texts(&page, "table.audit tbody td:nth-child(4)");
    assert!(targets.contains(&format!("user {evil}")), "{targets:?}");

    let filtered = html(
        &admin
            .get("/admin/audit?action=auth.login&outcome=failure")
            .await
            .text()
            .await
            .unwrap(),
    );
    let actions = texts(&filtered, "table.audit tbody td:nth-child(3)");
    assert_eq!(actions, vec!["auth.login", "auth.login"]);
    let bad = admin.get("/admin/audit?outcome=maybe").await;
    assert_eq!(bad.status(), 400);

    let export = admin.get("/admin/audit.csv?action=auth.").await;
    assert_eq!(export.status(), 200);
    assert!(export.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename=\"harbormaster-audit-"));
    assert!(export.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = export.text().await.unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("id,at,actor,actor_kind,action,target,outcome,client_addr,details")
    );
    let body: Vec<&str> = lines.collect();
    assert_eq!(body.len(), 3, "two failures and the admin's sign-in: {csv}");
    assert!(
        csv.contains("\"'=HYPERLINK(\"\"http://x\"\")\""),
        "a formula is defused: {csv}"
    );
    assert!(body.iter().all(|line| line.contains(",127.0.0.1,")));
    let rows = app.audit_rows().await;
    assert!(rows.iter().any(|row| row.0 == "audit.export"));

    let api: serde_json::Value = admin
        .get("/api/v1/audit?action=auth.login&limit=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(api["items"].as_array().unwrap().len(), 2);
    assert!(api["next_before"].is_i64());
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn forwarded_addresses_are_believed_only_from_trusted_proxies(pool: PgPool) {
    let forwarded = |app: &TestApp| {
        reqwest::Client::new()
            .post(app.url("/login"))
            .header("x-forwarded-for", "203.0.113.50")
            .form(&[("name", "someone"), ("password", "wrong")])
            .send()
    };
    let app = TestApp::spawn(pool.clone()).await;
    forwarded(&app).await.unwrap();
    let mut config = test_config();
    config.auth.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let behind_proxy = TestApp::spawn_with(pool.clone(), config, None).await;
    forwarded(&behind_proxy).await.unwrap();
    let addresses: Vec<Option<String>> =
        sqlx::query_scalar("select client_addr from audit_log order by id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        addresses,
        vec![Some("127.0.0.1".into()), Some("203.0.113.50".into())]
    );
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn pages_show_the_user_a_sign_out_form_and_admin_entries_only_to_admins(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let viewer = app.login_as(Role::Viewer).await;
    let page = html(&viewer.get("/").await.text().await.unwrap());
    assert_eq!(
        texts(&page, ".whoami"),
        vec![format!("{} viewer", viewer.name)]
    );
    assert_eq!(
        texts(&page, "form[action='/logout'] button"),
        vec!["Sign out"]
    );
    let nav = texts(&page, "nav.mainnav a");
    assert!(!nav.contains(&"Users".to_string()), "{nav:?}");
    assert!(!nav.contains(&"Audit".to_string()));

    let admin = app.login_as(Role::Admin).await;
    let page = html(&admin.get("/").await.text().await.unwrap());
    let nav = texts(&page, "nav.mainnav a");
    for entry in ["Users", "Tokens", "Audit"] {
        assert!(nav.contains(&entry.to_string()), "{entry} in {nav:?}");
    }
    // The error pages know who is signed in too.
    let missing = html(&admin.get("/nowhere").await.text().await.unwrap());
    assert!(texts(&missing, "nav.mainnav a").contains(&"Audit".to_string()));

    // A stranger is sent to sign in and comes back to the page asked for.
    let stranger = new_client();
    let response = stranger
        .get(app.url("/admin/audit?actor=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        "/login?next=/admin/audit%3Factor%3Dx"
    );
    let login_page = html(
        &stranger
            .get(app.url("/login?next=/admin/audit%3Factor%3Dx"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let next = scraper::Selector::parse("input[name=next]").unwrap();
    assert_eq!(
        login_page
            .select(&next)
            .next()
            .unwrap()
            .value()
            .attr("value"),
        Some("/admin/audit?actor=x")
    );
    app.create_user("nina", Role::Admin, "nina's long password")
        .await;
    let response = stranger
        .post(app.url("/login"))
        .form(&[
            ("name", "nina"),
            ("password", "nina's long password"),
            ("next", "https://evil.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["location"], "/", "never off-site");
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_setup_link_creates_the_first_admin_once(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let link = setup::announce_if_needed(&app.pool, &app.url)
        .await
        .unwrap()
        .expect("no user yet: a link");
    let path = link.strip_prefix(&app.url).unwrap().to_string();
    assert!(path.starts_with("/setup/"));
    let stored: i64 = sqlx::query_scalar("select count(*) from setup_tokens where token_hash = $1")
        .bind(auth::digest(path.strip_prefix("/setup/").unwrap()))
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 1, "the token is stored hashed");

    let browser = new_client();
    let form = browser.get(app.url(&path)).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let page = html(&form.text().await.unwrap());
    assert_eq!(texts(&page, "h1"), vec!["Create the first admin"]);

    let mismatch = browser
        .post(app.url(&path))
        .form(&[
            ("name", "root"),
            ("password", "a long enough password"),
            ("confirm", "a different password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(mismatch.status(), 422);

    let done = browser
        .post(app.url(&path))
        .form(&[
            ("name", "root"),
            ("password", "a long enough password"),
            ("confirm", "a long enough password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 303);
    let home = html(
        &browser
            .get(app.url("/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(
        texts(&home, ".whoami"),
        vec!["root admin"],
        "signed in as the new admin"
    );

    let again = new_client().get(app.url(&path)).send().await.unwrap();
    assert_eq!(again.status(), 404, "single use");
    let reuse = new_client()
        .post(app.url(&path))
        .form(&[
            ("name", "second"),
            ("password", "a long enough password"),
            ("confirm", "a long enough password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(reuse.status(), 404);
    assert_eq!(
        setup::announce_if_needed(&app.pool, &app.url)
            .await
            .unwrap(),
        None,
        "no link once a user exists"
    );
    let rows = app.audit_rows().await;
    assert!(rows.contains(&("user.create".into(), "user root".into(), "success".into())));
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn an_expired_setup_link_does_not_work(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let link = setup::announce_if_needed(&app.pool, &app.url)
        .await
        .unwrap()
        .unwrap();
    sqlx::query("update setup_tokens set expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    let response = new_client().get(&link).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert!(error_message(response).await.contains("not valid"));
}

/// The URL of the test's own database, for the binary.
pub fn database_url(pool: &PgPool) -> String {
    let options = pool.connect_options();
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap()
    )
}

pub fn binary(database_url: &str) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_harbormaster"));
    command
        .env("DATABASE_URL", database_url)
        .env_remove("HARBORMASTER_BIND")
        .env("HARBORMASTER_DOCKER", "unix:///nonexistent/docker.sock")
        .env("RUST_LOG", "info");
    command
}

/// A server process that is killed if the test fails before stopping it.
pub(crate) struct ServerGuard(pub(crate) std::process::Child);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn run_with_stdin(mut command: std::process::Command, input: &str) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_first_start_logs_a_setup_link_and_the_cli_manages_users_and_tokens(pool: PgPool) {
    let url = database_url(&pool);

    // First start with no user: the log carries a one-time link.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = ServerGuard(
        binary(&url)
            .arg("serve")
            .env("HARBORMASTER_BIND", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = server.0.stderr.take().unwrap();
    let (found, link) = tokio::sync::oneshot::channel();
    // Reads the log to its end, so the server never writes into a closed pipe.
    std::thread::spawn(move || {
        let mut found = Some(found);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let link = line.find("http://").and_then(|start| {
                let rest = &line[start..];
                let end = rest.find(' ').unwrap_or(rest.len());
                rest[..end]
                    .contains("/setup/")
                    .then(|| rest[..end].to_string())
            });
            if let Some(link) = link {
                if let Some(sender) = found.take() {
                    let _ = sender.send(link);
                }
            }
        }
    });
    let link = tokio::time::timeout(Duration::from_secs(60), link)
        .await
        .expect("the link is logged in time")
        .expect("a setup link in the log");
    // Stop it once it serves (before that, SIGTERM is not yet handled).
    let ready = format!("http://127.0.0.1:{port}/readyz");
    let mut serving = false;
    for _ in 0..300 {
        if let Ok(response) = reqwest::get(&ready).await {
            serving = response.status() == 200;
            if serving {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(serving, "the server becomes ready");
    unsafe { libc::kill(server.0.id() as i32, 15) };
    assert!(server.0.wait().unwrap().success(), "a clean stop");
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{port}/setup/")),
        "{link}"
    );
    let token = link.rsplit('/').next().unwrap();
    assert!(setup::is_valid(&pool, token).await.unwrap());

    // No password on standard input: refused, no default.
    let output = binary(&url)
        .args(["user", "add", "root", "--role", "admin"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--password-stdin"), "{stderr}");

    let mut command = binary(&url);
    command.args(["user", "add", "root", "--role", "admin", "--password-stdin"]);
    let output = run_with_stdin(command, "short\n");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("at least 12 characters"));

    let mut command = binary(&url);
    command.args(["user", "add", "root", "--role", "admin", "--password-stdin"]);
    let output = run_with_stdin(command, "root's long password\n");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !setup::is_valid(&pool, token).await.unwrap(),
        "setup is over"
    );

    let output = binary(&url).args(["user", "list"]).output().unwrap();
    let listing = String::from_utf8_lossy(&output.stdout);
    assert!(
        listing
            .lines()
            .any(|line| line.starts_with("root") && line.contains("admin")),
        "{listing}"
    );

    let output = binary(&url)
        .args(["token", "create", "--name", "ci", "--role", "ci"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let secret = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(
        secret.starts_with("hm_") && !secret.contains(' '),
        "only the token on stdout: {secret}"
    );
    assert!(harbormaster::auth::tokens::authenticate(&pool, &secret)
        .await
        .unwrap()
        .is_some());
    let output = binary(&url)
        .args(["token", "revoke", "ci"])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(harbormaster::auth::tokens::authenticate(&pool, &secret)
        .await
        .unwrap()
        .is_none());

    // The user signs in with the password given to the command.
    let app = TestApp::spawn(pool.clone()).await;
    app.login("root", "root's long password", Role::Admin).await;

    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "select actor, action, target from audit_log where actor = 'cli' order by id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            ("cli".into(), "user.create".into(), "user root".into()),
            ("cli".into(), "token.create".into(), "token ci".into()),
            ("cli".into(), "token.revoke".into(), "token ci".into()),
        ]
    );
}
