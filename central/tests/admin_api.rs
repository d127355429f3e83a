//! The admin API over HTTP, through the real router and store: who may call it.

use std::time::Duration;

use reqwest::StatusCode;
use tally_central::admin::{AdminState, router};
use tally_central::store::Store;
use tally_central::sync::hub::Hub;
use tally_protocol::Secret;
use tokio_util::sync::CancellationToken;

const ADMIN_TOKEN: &str = "admin-token-0123456789";

struct Admin {
    url: String,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn admin_with(edit: impl FnOnce(&mut AdminState)) -> Admin {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut state = AdminState::new(
        store,
        Hub::default(),
        &Secret::new(ADMIN_TOKEN),
        Duration::from_secs(60),
    );
    edit(&mut state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, router(state))
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    Admin {
        url,
        shutdown,
        _dir: dir,
    }
}

async fn get(url: &str, authorization: Option<&str>) -> StatusCode {
    let mut request = reqwest::Client::new().get(url);
    if let Some(authorization) = authorization {
        request = request.header(reqwest::header::AUTHORIZATION, authorization);
    }
    request.send().await.unwrap().status()
}

/// Regression: the scheme word was case-sensitive, so `bearer <token>` was refused (RFC 7235
/// makes it case-insensitive).
#[tokio::test]
async fn the_auth_scheme_is_case_insensitive() {
    let admin = admin_with(|_| {}).await;
    let agents = format!("{}/v1/agents", admin.url);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let auth = format!("{scheme} {ADMIN_TOKEN}");
        assert_eq!(get(&agents, Some(&auth)).await, StatusCode::OK, "{scheme}");
    }
    for auth in [
        None,
        Some("bearer wrong-token-0123456789"),
        Some(ADMIN_TOKEN),
    ] {
        assert_eq!(
            get(&agents, auth).await,
            StatusCode::UNAUTHORIZED,
            "{auth:?}"
        );
    }
}
