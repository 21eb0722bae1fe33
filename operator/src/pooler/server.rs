//! The pooler pod's control endpoint. `/healthz` is open (the readiness probe); every `/v1`
//! call needs `Authorization: Bearer <token>` with the token of the cluster's pooler Secret.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::client::{
    PATH_HEALTHZ, PATH_PAUSE, PATH_RESUME, PATH_STATUS, PATH_TARGET, TargetRequest, WAIT_MS_PARAM,
};
use super::run::Pooler;

/// Longest a pause call waits for PgBouncer to drain before it answers `pausing`.
pub const MAX_PAUSE_WAIT: Duration = Duration::from_secs(5);

pub fn router(pooler: Arc<Pooler>) -> Router {
    let authenticated = Router::new()
        .route(PATH_STATUS, get(status))
        .route(PATH_PAUSE, post(pause))
        .route(PATH_RESUME, post(resume))
        .route(PATH_TARGET, post(target))
        .route_layer(middleware::from_fn_with_state(pooler.clone(), require_token));
    Router::new().route(PATH_HEALTHZ, get(healthz)).merge(authenticated).with_state(pooler)
}

async fn require_token(State(pooler): State<Arc<Pooler>>, request: Request, next: Next) -> Response {
    if authorized(request.headers(), pooler.token()) {
        next.run(request).await
    } else {
        (StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response()
    }
}

/// Constant-time comparison of the bearer token, so that its bytes cannot be guessed one by
/// one from answer times.
pub fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.as_bytes(), token.as_bytes());
    !token.is_empty() && a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `waitMs` of a pause call, capped at [`MAX_PAUSE_WAIT`]; absent means do not wait.
pub fn pause_wait(uri: &Uri) -> Duration {
    let millis = uri
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix(WAIT_MS_PARAM)?.strip_prefix('=')?.parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_millis(millis).min(MAX_PAUSE_WAIT)
}

fn json(status: &super::client::PoolerStatus) -> Response {
    match serde_json::to_string(status) {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn failed(error: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_GATEWAY, error.to_string()).into_response()
}

async fn healthz(State(pooler): State<Arc<Pooler>>) -> Response {
    match pooler.healthy().await {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

async fn status(State(pooler): State<Arc<Pooler>>) -> Response {
    json(&pooler.status())
}

async fn pause(State(pooler): State<Arc<Pooler>>, uri: Uri) -> Response {
    json(&pooler.pause(pause_wait(&uri)).await)
}

async fn resume(State(pooler): State<Arc<Pooler>>) -> Response {
    match pooler.resume().await {
        Ok(status) => json(&status),
        Err(error) => failed(error),
    }
}

async fn target(State(pooler): State<Arc<Pooler>>, body: String) -> Response {
    let Ok(request) = serde_json::from_str::<TargetRequest>(&body) else {
        return (StatusCode::BAD_REQUEST, "expected {\"host\": \"<host>\"}").into_response();
    };
    match pooler.set_target(&request.host).await {
        Ok(status) => json(&status),
        Err(super::run::TargetError::Invalid) => {
            (StatusCode::BAD_REQUEST, "host must be a DNS name or an IP address").into_response()
        }
        Err(error) => failed(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_the_exact_bearer_token_is_authorized() {
        assert!(authorized(&headers("Bearer s3cret"), "s3cret"));
        assert!(!authorized(&headers("Bearer s3cre"), "s3cret"));
        assert!(!authorized(&headers("Bearer s3cretX"), "s3cret"));
        assert!(!authorized(&headers("Basic s3cret"), "s3cret"));
        assert!(!authorized(&HeaderMap::new(), "s3cret"));
        // An empty configured token never authorizes anything.
        assert!(!authorized(&headers("Bearer "), ""));
    }

    #[test]
    fn pause_wait_is_read_from_the_query_and_capped() {
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        assert_eq!(pause_wait(&uri("/v1/pause?waitMs=1500")), Duration::from_millis(1500));
        assert_eq!(pause_wait(&uri("/v1/pause?x=1&waitMs=99999")), MAX_PAUSE_WAIT);
        assert_eq!(pause_wait(&uri("/v1/pause")), Duration::ZERO);
        assert_eq!(pause_wait(&uri("/v1/pause?waitMs=abc")), Duration::ZERO);
    }
}
