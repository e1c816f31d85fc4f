//! The console in a real headless Chromium.

use fantoccini::Locator;
use sqlx::PgPool;

use crate::common::browser::Browser;
use crate::common::TestApp;
use harbormaster::auth::Role;

#[sqlx::test(migrator = "harbormaster::db::MIGRATOR")]
async fn the_overview_renders_in_a_real_browser_with_its_styles_and_script(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create_user("ada", Role::Viewer, "correct horse battery staple")
        .await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    let client = &browser.client;
    browser
        .sign_in(&app.url, "ada", "correct horse battery staple")
        .await;
    client.goto(&app.url("/")).await.unwrap();
    assert_eq!(client.title().await.unwrap(), "Overview · Harbormaster");
    let heading = client.find(Locator::Css("main h1")).await.unwrap();
    assert_eq!(heading.text().await.unwrap(), "Overview");
    // The stylesheet applied (the CSP allowed it): the top bar has the brand colour.
    let background = client
        .execute(
            "return getComputedStyle(document.querySelector('.topbar')).backgroundColor;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(background, "rgb(18, 53, 91)");
    // The script ran (it marks the document once loaded).
    let marked = client
        .execute("return document.documentElement.dataset.js;", vec![])
        .await
        .unwrap();
    assert_eq!(marked, "on");
    browser.screenshot("overview").await;

    client.goto(&app.url("/no/such/page")).await.unwrap();
    let heading = client.find(Locator::Css("main h1")).await.unwrap();
    assert_eq!(heading.text().await.unwrap(), "404 · Not Found");
    browser.screenshot("not-found").await;
    browser.close().await;
}
