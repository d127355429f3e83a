//! The sync listener: TCP → TLS (rustls) → WebSocket (tokio-tungstenite) → [`session`].
//!
//! Each connection is its own task, so a slow or stalled agent only ever waits on itself.
//! Connections are bounded, and those not authenticated yet more tightly, per address too
//! ([`admission`]); handshakes and idle links by timeouts; frames by a maximum message size
//! (an oversized or garbage frame closes that connection only).

pub mod admission;
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
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::task::TaskTracker;

use admission::{Admission, Pending};
use session::{Frame, SessionContext};

/// Largest WebSocket message accepted: a full batch of large events fits many times over.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// The one path agents connect on; an upgrade anywhere else is refused.
pub const SYNC_PATH: &str = "/v1/sync";

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
    let admission = Admission::new(max_connections);
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
        let (slot, pending) = match admission.admit(peer) {
            Ok(admitted) => admitted,
            Err(why) => {
                admission.refused(peer, why);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let ctx = Arc::clone(&ctx);
        let acceptor = acceptor.clone();
        let admission = Arc::clone(&admission);
        tracker.spawn(async move {
            let _slot = slot;
            let budget = admission.handshake_timeout();
            match acceptor {
                Some(acceptor) => match timeout(budget, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => connection(tls, peer, ctx, &admission, pending).await,
                    Ok(Err(error)) => {
                        admission.failure("TLS handshake failed", peer, &error.to_string());
                    }
                    Err(_) => admission.failure("TLS handshake timed out", peer, "no handshake"),
                },
                None => connection::<TcpStream>(tcp, peer, ctx, &admission, pending).await,
            }
        });
    }
}

async fn connection<S>(
    io: S,
    peer: SocketAddr,
    ctx: Arc<SessionContext>,
    admission: &Admission,
    pending: Pending,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // How far the agent's clock is behind ours, from the clock it sent with the handshake.
    let mut clock_offset = None;
    // The callback's type is tungstenite's, large error variant included.
    #[allow(clippy::result_large_err)]
    let read_clock = |request: &Request, response: Response| {
        if request.uri().path() != SYNC_PATH {
            let mut refusal = ErrorResponse::new(Some(format!("agents connect on {SYNC_PATH}")));
            *refusal.status_mut() = StatusCode::NOT_FOUND;
            return Err(refusal);
        }
        clock_offset = request
            .headers()
            .get(tally_protocol::CLOCK_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .map(|agent| Timestamp::now().as_micros().saturating_sub(agent));
        Ok(response)
    };
    let ws = match timeout(
        admission.handshake_timeout(),
        tokio_tungstenite::accept_hdr_async_with_config(io, read_clock, Some(websocket_config())),
    )
    .await
    {
        Ok(Ok(ws)) => ws,
        Ok(Err(error)) => {
            admission.failure("WebSocket handshake failed", peer, &error.to_string());
            return;
        }
        Err(_) => {
            admission.failure("WebSocket handshake timed out", peer, "no handshake");
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
    let end = session::run(
        Box::pin(stream),
        Box::pin(sink),
        peer,
        clock_offset,
        ctx,
        pending,
    )
    .await;
    tracing::debug!(%peer, ?end, "connection closed");
}
