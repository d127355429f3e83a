//! A minimal HTTP/1.1 client for the CLI's talk with a running agent on loopback.

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tally_protocol::Secret;

/// Largest answer read back.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// GETs `url` (plain `http://host:port/path`) with a bearer token; returns the body of a 2xx.
pub async fn get(url: &str, token: &Secret) -> anyhow::Result<String> {
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
    let connection = tokio::spawn(connection);
    let request = Request::get(uri.clone())
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
    let status = response.status();
    let limited = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES);
    let body = limited
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the answer failed: {e}"))?
        .to_bytes();
    connection.abort();
    let text = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        bail!("{url} answered {status}: {text}");
    }
    Ok(text)
}
