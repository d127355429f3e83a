//! A minimal HTTP/1.1 client for the CLI's talk with a running agent on loopback.

use std::path::Path;

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tally_protocol::Secret;
use tally_service::partfile::PartFile;

/// Largest answer read back.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// GETs `url` (plain `http://host:port/path`) with a bearer token; returns the body of a 2xx.
pub async fn get(url: &str, token: &Secret) -> anyhow::Result<String> {
    let response = send(hyper::Method::GET, url, token).await?;
    let status = response.status();
    let limited = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES);
    let body = limited
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the answer failed: {e}"))?
        .to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        bail!("{url} answered {status}: {text}");
    }
    Ok(text)
}

/// POSTs to `url` and writes the body of a 2xx to `to`, whole or not at all: into a temporary
/// file beside it (0600), fsynced, then renamed. Returns the bytes written.
pub async fn download(url: &str, token: &Secret, to: &Path) -> anyhow::Result<u64> {
    let response = send(hyper::Method::POST, url, token).await?;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let body = http_body_util::Limited::new(body, MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the answer failed: {e}"))?
            .to_bytes();
        bail!(
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let mut file = PartFile::create(to).await?;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| anyhow::anyhow!("reading the answer failed: {e}"))?;
        if let Ok(data) = frame.into_data() {
            file.write(&data).await?;
        }
    }
    Ok(file.finish().await?)
}

async fn send(
    method: hyper::Method,
    url: &str,
    token: &Secret,
) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
    let uri: hyper::Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        bail!("{url}: only http:// URLs of a local agent are supported");
    }
    let authority = uri.authority().context("the URL has no host")?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((authority.host(), port))
        .await
        .with_context(|| format!("cannot connect to {authority} (is tally-agent running?)"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake failed")?;
    // The connection task ends with the connection, when the answer's body is dropped.
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(uri.clone())
        .header(hyper::header::HOST, authority.as_str())
        .header(
            hyper::header::AUTHORIZATION,
            format!("Bearer {}", token.expose()),
        )
        .body(Empty::<Bytes>::new())?;
    let response = sender
        .send_request(request)
        .await
        .context("request failed")?;
    Ok(response)
}
