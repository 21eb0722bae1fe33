//! The pooler pod's control channel: HTTPS with mutual TLS, as the instance pods' (see
//! [`crate::instance::control`]): the pooler's certificate on the server side, and client
//! certificates of the cluster CA only. Routes and bodies are in [`crate::protocol::pooler`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::protocol::pooler::{
    PAUSE_PATH, PauseRequest, PoolerState, RESUME_PATH, ResumeRequest, STATUS_PATH,
};

use super::supervisor::{Supervisor, TargetError};

/// Longest a pause call waits for PgBouncer to drain before it answers `pausing`: the
/// operator retries, and each call must stay well inside its own timeout.
pub const MAX_PAUSE_WAIT: Duration = Duration::from_secs(5);

pub fn router(supervisor: Arc<Supervisor>) -> Router {
    Router::new()
        .route(STATUS_PATH, get(status))
        .route(PAUSE_PATH, post(pause))
        .route(RESUME_PATH, post(resume))
        .with_state(supervisor)
}

fn json(state: &PoolerState) -> Response {
    match serde_json::to_string(state) {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn status(State(supervisor): State<Arc<Supervisor>>) -> Response {
    json(&supervisor.state())
}

async fn pause(State(supervisor): State<Arc<Supervisor>>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<PauseRequest>(&body) else {
        return (StatusCode::BAD_REQUEST, "expected {\"waitMs\": <milliseconds>}").into_response();
    };
    let wait = Duration::from_millis(request.wait_ms).min(MAX_PAUSE_WAIT);
    json(&supervisor.pause(wait).await)
}

async fn resume(State(supervisor): State<Arc<Supervisor>>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<ResumeRequest>(&body) else {
        return (StatusCode::BAD_REQUEST, "expected {\"target\": \"<host>\"}").into_response();
    };
    match supervisor.resume(request.target.as_deref(), request.port).await {
        Ok(state) => json(&state),
        Err(TargetError::Invalid) => {
            (StatusCode::BAD_REQUEST, "target must be a DNS name or an IP address").into_response()
        }
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    }
}

/// Serves the channel on `tcp` until the process ends.
pub async fn serve(
    tcp: tokio::net::TcpListener,
    config: rustls::ServerConfig,
    supervisor: Arc<Supervisor>,
) -> std::io::Result<()> {
    axum::serve(crate::tls::TlsListener::new(tcp, config), router(supervisor)).await
}
