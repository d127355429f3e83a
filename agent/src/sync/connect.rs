//! Opening the link to central: TCP, then TLS (rustls), then the WebSocket handshake.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rustls::pki_types::ServerName;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// A byte stream, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type Link = WebSocketStream<Box<dyn Io>>;

/// Where and how to reach central; built once from the configuration.
#[derive(Clone)]
pub struct Endpoint {
    url: String,
    host: String,
    port: u16,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Largest message accepted from central.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

impl Endpoint {
    /// `url` is `wss://host:port/path` (or `ws://` to a loopback address, for development);
    /// `ca_file` holds the PEM certificates to trust instead of the public web roots;
    /// `server_name` overrides the name checked in central's certificate.
    pub fn new(
        url: &str,
        ca_file: Option<&std::path::Path>,
        server_name: Option<&str>,
    ) -> anyhow::Result<Endpoint> {
        let uri: hyper::Uri = url
            .parse()
            .with_context(|| format!("{url:?} is not a URL"))?;
        let secure = match uri.scheme_str() {
            Some("wss") => true,
            Some("ws") => false,
            _ => bail!("{url:?}: central_url must start with wss:// (or ws:// on loopback)"),
        };
        let host = uri
            .host()
            .context("central_url has no host")?
            .trim_matches(['[', ']'])
            .to_owned();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let loopback = tally_service::is_loopback_host(&host);
        if !secure && !loopback {
            bail!("{url:?}: plain ws:// is only allowed to a loopback address; use wss://");
        }
        let tls = if secure {
            let mut roots = rustls::RootCertStore::empty();
            match ca_file {
                Some(path) => {
                    for cert in CertificateDer::pem_file_iter(path)
                        .with_context(|| format!("cannot read the CA file {}", path.display()))?
                    {
                        let cert = cert.with_context(|| {
                            format!("{} is not a PEM certificate file", path.display())
                        })?;
                        roots.add(cert).with_context(|| {
                            format!("{} holds an unusable certificate", path.display())
                        })?;
                    }
                    if roots.is_empty() {
                        bail!("{} holds no certificate", path.display());
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .context("TLS protocol versions")?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = server_name.unwrap_or(&host).to_owned();
            let name = ServerName::try_from(name.clone())
                .with_context(|| format!("{name:?} is not a valid TLS server name"))?;
            Some((Arc::new(config), name))
        } else {
            None
        };
        Ok(Endpoint {
            url: url.to_owned(),
            host,
            port,
            tls,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Connects, within `deadline` for the whole handshake.
    pub async fn connect(&self, deadline: Duration) -> anyhow::Result<Link> {
        timeout(deadline, self.connect_inner())
            .await
            .with_context(|| format!("connecting to {} timed out", self.url))?
    }

    async fn connect_inner(&self) -> anyhow::Result<Link> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("cannot reach {}:{}", self.host, self.port))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &self.tls {
            Some((config, name)) => Box::new(
                tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(name.clone(), tcp)
                    .await
                    .context("TLS handshake with central failed")?,
            ),
            None => Box::new(tcp),
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES));
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .context("central's URL")?;
        // The clock is read last, just before the request goes out.
        let clock = tally_protocol::Timestamp::now().as_micros().to_string();
        request.headers_mut().insert(
            tally_protocol::CLOCK_HEADER,
            clock.parse().context("a clock reading")?,
        );
        let (link, _) = tokio_tungstenite::client_async_with_config(request, io, Some(config))
            .await
            .context("WebSocket handshake with central failed")?;
        Ok(link)
    }
}
