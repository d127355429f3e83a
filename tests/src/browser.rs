//! A headless Chromium driven over the DevTools protocol (CDP), for testing the dashboard as a
//! person uses it: a small client of our own over a WebSocket (JSON commands with ids, answers
//! matched by id, events skipped).
//!
//! The browser is Debian's `chromium` (`.ci/run` installs it), or the one `TALLY_CHROMIUM`
//! names. It runs in its own process group with a throw-away profile, and the whole group is
//! killed when the [`Browser`] is dropped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long one DevTools command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The Chromium binary: `TALLY_CHROMIUM`, else `chromium` on the PATH.
pub fn chromium_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("TALLY_CHROMIUM") {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .find(|candidate| candidate.is_file())
        .context("chromium is not installed (apt-get install chromium, as .ci/run does, or set TALLY_CHROMIUM)")
}

#[derive(Debug)]
pub struct Browser {
    child: tokio::process::Child,
    socket: Socket,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts a headless Chromium of `width` × `height` CSS pixels and attaches to its page.
    pub async fn launch(width: u32, height: u32) -> anyhow::Result<Browser> {
        let binary = chromium_binary()?;
        let profile = tempfile::tempdir().context("cannot make a browser profile directory")?;
        let mut command = tokio::process::Command::new(&binary);
        command
            .args([
                "--headless=new",
                // Root in CI and containers: Chromium's sandbox needs user namespaces.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                &format!("--window-size={width},{height}"),
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        // Chromium writes the port it chose into the profile once it listens.
        let port_file = profile.path().join("DevToolsActivePort");
        let port = crate::wait::wait_until(
            "Chromium to open its DevTools port",
            Duration::from_secs(60),
            || async {
                Ok(match std::fs::read_to_string(&port_file) {
                    Ok(text) if text.contains('\n') => std::ops::ControlFlow::Break(
                        text.lines().next().unwrap_or_default().trim().to_owned(),
                    ),
                    _ => std::ops::ControlFlow::Continue("no DevToolsActivePort yet".to_owned()),
                })
            },
        )
        .await?;
        let targets: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .context("cannot list Chromium's targets")?
            .json()
            .await?;
        let page = targets
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .with_context(|| format!("Chromium has no page target: {targets}"))?
            .to_owned();
        let (socket, _) = tokio_tungstenite::connect_async(&page)
            .await
            .with_context(|| format!("cannot attach to {page}"))?;
        let mut browser = Browser {
            child,
            socket,
            next_id: 0,
            _profile: profile,
        };
        browser.call("Page.enable", json!({})).await?;
        browser.call("Runtime.enable", json!({})).await?;
        Ok(browser)
    }

    /// Sends a DevTools command and returns its `result`.
    pub async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let command = json!({"id": id, "method": method, "params": params});
        self.socket
            .send(Message::text(command.to_string()))
            .await
            .with_context(|| format!("cannot send {method}"))?;
        let answer = tokio::time::timeout(COMMAND_TIMEOUT, async {
            while let Some(message) = self.socket.next().await {
                let Message::Text(text) = message? else {
                    continue;
                };
                let value: Value = serde_json::from_str(&text)?;
                if value["id"] == id {
                    return Ok(value);
                }
            }
            bail!("Chromium closed the DevTools connection")
        })
        .await
        .with_context(|| format!("{method}: no answer within {COMMAND_TIMEOUT:?}"))??;
        if let Some(error) = answer.get("error") {
            bail!("{method} failed: {error}");
        }
        Ok(answer["result"].clone())
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    pub async fn eval(&mut self, expression: &str) -> anyhow::Result<Value> {
        let params = json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
        let result = self.call("Runtime.evaluate", params).await?;
        if let Some(exception) = result.get("exceptionDetails") {
            bail!("{expression}: {exception}");
        }
        Ok(result["result"]["value"].clone())
    }

    /// Waits until `expression` is truthy in the page; returns its value.
    pub async fn wait_for(
        &mut self,
        what: &str,
        expression: &str,
        deadline: Duration,
    ) -> anyhow::Result<Value> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let last = match self.eval(expression).await {
                Ok(value) if truthy(&value) => return Ok(value),
                Ok(value) => value,
                Err(error) => Value::String(format!("{error:#}")),
            };
            if tokio::time::Instant::now() >= until {
                bail!("{what}: not within {deadline:?}; last value: {last}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Loads `url` and waits for the document to be complete.
    pub async fn navigate(&mut self, url: &str) -> anyhow::Result<()> {
        let answer = self.call("Page.navigate", json!({"url": url})).await?;
        if let Some(error) = answer.get("errorText") {
            bail!("cannot load {url}: {error}");
        }
        self.wait_for(
            &format!("{url} to load"),
            "document.readyState === 'complete'",
            Duration::from_secs(30),
        )
        .await?;
        Ok(())
    }

    /// Types `text` into the focused element, as a keyboard would.
    pub async fn type_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.call("Input.insertText", json!({"text": text})).await?;
        Ok(())
    }

    /// Presses a key such as `Enter` or `Tab` on the focused element.
    pub async fn press(&mut self, key: &str) -> anyhow::Result<()> {
        let code = match key {
            "Enter" => 13,
            "Tab" => 9,
            _ => 0,
        };
        for kind in ["keyDown", "keyUp"] {
            let mut event =
                json!({"type": kind, "key": key, "code": key, "windowsVirtualKeyCode": code});
            if kind == "keyDown" && key == "Enter" {
                event["text"] = "\r".into();
            }
            self.call("Input.dispatchKeyEvent", event).await?;
        }
        Ok(())
    }

    /// Sets the viewport (a phone: `mobile`).
    pub async fn viewport(&mut self, width: u32, height: u32, mobile: bool) -> anyhow::Result<()> {
        let params =
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile});
        self.call("Emulation.setDeviceMetricsOverride", params)
            .await?;
        Ok(())
    }

    /// Saves a PNG of the whole page to `path`.
    pub async fn screenshot(&mut self, path: &Path) -> anyhow::Result<()> {
        let params = json!({"format": "png", "captureBeyondViewport": true});
        let shot = self.call("Page.captureScreenshot", params).await?;
        let data = shot["data"].as_str().context("a screenshot without data")?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .context("the screenshot is not base64")?;
        ensure!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        std::fs::write(path, png).with_context(|| format!("cannot write {}", path.display()))
    }
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The renderer and helper processes share the browser's process group.
        if let Some(pid) = self
            .child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32))
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}
