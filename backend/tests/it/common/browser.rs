//! A real headless Chromium driven through chromedriver (Debian's `chromium` and
//! `chromium-driver`, installed by `make test`).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::json;

/// A browser session with its own chromedriver and profile, ended on drop.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn find(program: &str, fallbacks: &[&str]) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .chain(fallbacks.iter().map(std::path::PathBuf::from))
        .find(|candidate| candidate.is_file())
        .map(|found| found.to_string_lossy().into_owned())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium; panics with the reason when they are missing
    /// (unless live tests are explicitly skipped, then `None`).
    pub async fn start() -> Option<Self> {
        let (Some(driver_bin), Some(chromium)) = (
            find("chromedriver", &["/usr/bin/chromedriver"]),
            find(
                "chromium",
                &["/usr/bin/chromium", "/usr/lib/chromium/chromium"],
            ),
        ) else {
            if super::skip_live() {
                eprintln!("skipping a browser test: HARBORMASTER_SKIP_LIVE=1 and no chromium/chromedriver");
                return None;
            }
            panic!("browser tests need Debian's chromium and chromium-driver (make test installs them)");
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-extensions",
                    "--window-size=1366,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last_error = None;
        for _ in 0..100 {
            // chromedriver speaks plain HTTP on loopback: no TLS stack needed.
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Some(Self {
                        client,
                        driver,
                        _profile: profile,
                    })
                }
                Err(err) => last_error = Some(err),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not accept a session: {last_error:?}");
    }

    /// Signs in through the real sign-in page.
    pub async fn sign_in(&self, base_url: &str, name: &str, password: &str) {
        use fantoccini::Locator;
        self.client
            .goto(&format!("{base_url}/login"))
            .await
            .expect("the sign-in page opens");
        let form = self
            .client
            .form(Locator::Css("form[action='/login']"))
            .await
            .expect("the sign-in form");
        form.set_by_name("name", name).await.unwrap();
        form.set_by_name("password", password).await.unwrap();
        form.submit().await.expect("the form submits");
    }

    /// Saves a full-page screenshot as `target/screenshots/<name>.png` (a test artifact).
    pub async fn screenshot(&self, name: &str) {
        let height = self
            .client
            .execute("return Math.max(document.body.scrollHeight, 900);", vec![])
            .await
            .ok()
            .and_then(|value| value.as_u64())
            .unwrap_or(900)
            .min(8000);
        let _ = self.client.set_window_size(1366, height as u32).await;
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        let _ = self.client.set_window_size(1366, 900).await;
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
