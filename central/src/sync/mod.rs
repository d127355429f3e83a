//! The sync listener: TCP → TLS (rustls) → WebSocket (tokio-tungstenite) → [`session`].
//!
//! Each connection is its own task, so a slow or stalled agent only ever waits on itself.
//! Connections are bounded by a semaphore; handshakes and idle links by timeouts; frames by a
//! maximum message size (an oversized or garbage frame closes that connection only).

pub mod hub;
pub mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::ServerConfig;
use tally_protocol::Timestamp;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::task::TaskTracker;

use session::{Frame, SessionContext};

/// Largest WebSocket message accepted: a full batch of large events fits many times over.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// Time allowed for the TLS and WebSocket handshakes together.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// WebSocket settings: bounded messages, and small buffers so that thousands of idle agents
/// cost little memory.
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
        .read_buffer_size(4 << 10)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_MESSAGE_BYTES * 2)
}

/// Accepts agent connections until `ctx.shutdown` is cancelled; sessions run on `tracker`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    ctx: Arc<SessionContext>,
    max_connections: usize,
    tracker: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(max_connections));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (tcp, peer) = tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::warn!(%peer, max_connections, "connection refused: at the connection limit");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let ctx = Arc::clone(&ctx);
        let acceptor = acceptor.clone();
        tracker.spawn(async move {
            let _permit = permit;
            match acceptor {
                Some(acceptor) => match timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => connection(tls, peer, ctx).await,
                    Ok(Err(error)) => tracing::info!(%peer, %error, "TLS handshake failed"),
                    Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                },
                None => connection::<TcpStream>(tcp, peer, ctx).await,
            }
        });
    }
}

async fn connection<S>(io: S, peer: SocketAddr, ctx: Arc<SessionContext>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // How far the agent's clock is behind ours, from the clock it sent with the handshake.
    let mut clock_offset = None;
    // The callback's type is tungstenite's, large error variant included.
    #[allow(clippy::result_large_err)]
    let read_clock = |request: &Request, response: Response| {
        clock_offset = request
            .headers()
            .get(tally_protocol::CLOCK_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .map(|agent| Timestamp::now().as_micros().saturating_sub(agent));
        Ok(response)
    };
    let ws = match timeout(
        HANDSHAKE_TIMEOUT,
        tokio_tungstenite::accept_hdr_async_with_config(io, read_clock, Some(websocket_config())),
    )
    .await
    {
        Ok(Ok(ws)) => ws,
        Ok(Err(error)) => {
            tracing::info!(%peer, %error, "WebSocket handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "WebSocket handshake timed out");
            return;
        }
    };
    let (sink, stream) = ws.split();
    let sink = sink.with(|bytes: Vec<u8>| async move {
        Ok::<_, tokio_tungstenite::tungstenite::Error>(WsMessage::Binary(bytes.into()))
    });
    let stream = stream.filter_map(|message| async move {
        match message {
            Ok(WsMessage::Binary(bytes)) => Some(Ok(Frame::Binary(bytes.to_vec()))),
            Ok(WsMessage::Ping(_) | WsMessage::Pong(_)) => Some(Ok(Frame::Alive)),
            Ok(WsMessage::Close(_)) => None,
            Ok(WsMessage::Text(_)) => Some(Ok(Frame::Binary(Vec::new()))),
            Ok(WsMessage::Frame(_)) => None,
            Err(e) => Some(Err(e)),
        }
    });
    let end = session::run(Box::pin(stream), Box::pin(sink), peer, clock_offset, ctx).await;
    tracing::debug!(%peer, ?end, "connection closed");
}
