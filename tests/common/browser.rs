//! A small WebDriver client (chromedriver + Debian's chromium) over plain
//! HTTP, for the UI tests: open pages, run scripts, click, screenshot.

use base64::Engine as _;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Browser {
    base: String,
    session: String,
    client: reqwest::Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Start chromedriver on a free loopback port and wait until it answers
/// its status as ready. The port can be taken by another test's server
/// between the probe and chromedriver's bind; then that server answers
/// instead, this chromedriver is stopped (by its PID) and another port is
/// tried.
async fn start_driver(client: &reqwest::Client) -> (Child, String) {
    for _ in 0..5 {
        let port = super::pg::free_port();
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let ready = loop {
            if let Ok(resp) = client.get(format!("{base}/status")).send().await {
                let status: Value = resp.json().await.unwrap_or_default();
                break status["value"]["ready"] == json!(true);
            }
            if matches!(driver.try_wait(), Ok(Some(_))) {
                break false;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if ready {
            return (driver, base);
        }
        let _ = driver.kill();
        let _ = driver.wait();
    }
    panic!("chromedriver did not get a port of its own in five tries");
}

impl Browser {
    /// `None` when chromium or chromedriver is not installed and the
    /// environment does not require them (`HOOKFLOW_REQUIRE_BROWSER=1`,
    /// set by `.ci/run`, turns that into a failure).
    pub async fn start() -> Option<Browser> {
        let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
        if !present {
            assert!(
                std::env::var("HOOKFLOW_REQUIRE_BROWSER").is_err(),
                "browser tests need {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
            );
            eprintln!("SKIPPED: browser tests need chromium and chromium-driver (apt-get install chromium chromium-driver)");
            return None;
        }
        let client = super::client();
        let (driver, base) = start_driver(&client).await;
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--window-size=1280,900", format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let resp: Value = client
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("session")
            .json()
            .await
            .expect("json");
        let session = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {resp}"))
            .to_string();
        Some(Browser {
            base,
            session,
            client,
            driver,
            _profile: profile,
        })
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.client.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req
            .send()
            .await
            .expect("webdriver")
            .json()
            .await
            .expect("json");
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Run JavaScript in the page; `return` gives a value back.
    pub async fn js(&self, script: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Wait (bounded) until `script` returns something truthy; return it.
    /// Generous: two headless browsers and the server share two cores.
    pub async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.js(script).await;
            let truthy = !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0));
            if truthy {
                return v;
            }
            if Instant::now() >= deadline {
                // What the page showed, so that a failure says why.
                let shown = self
                    .js("return `${location.hash} | live: ${document.getElementById('live')?.textContent} | ${document.querySelector('main')?.innerText.slice(0, 1500)}`")
                    .await;
                panic!("timed out waiting for {what}; the page showed: {shown}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        let found = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        let id = found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string();
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Save a PNG of the window into `dir/name.png`.
    pub async fn screenshot(&self, dir: &Path, name: &str) -> PathBuf {
        let b64 = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or(""))
            .expect("png");
        std::fs::create_dir_all(dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Send this header with every request the page makes (what a browser
    /// does with Basic credentials once its login prompt was answered).
    pub async fn set_header(&self, name: &str, value: &str) {
        let url = format!("{}/session/{}/goog/cdp/execute", self.base, self.session);
        for (cmd, params) in [
            ("Network.enable", json!({})),
            (
                "Network.setExtraHTTPHeaders",
                json!({ "headers": { name: value } }),
            ),
        ] {
            let r = self
                .client
                .post(&url)
                .json(&json!({ "cmd": cmd, "params": params }))
                .send()
                .await
                .expect("cdp");
            assert!(r.status().is_success(), "{cmd} failed");
        }
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.cmd(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Best effort: end the session (closing chromium), then the driver
        // we started, by its handle.
        let _ = delete(&format!("{}/session/{}", self.base, self.session));
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A DELETE without an async runtime (Drop may run outside one).
fn delete(url: &str) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "DELETE /{path} HTTP/1.1\r\nhost: {host}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    Ok(())
}
