//! /healthz (the process serves), /readyz (the CRDs are served; the body says whether this
//! replica leads or stands by) and /metrics.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::runtime::context::{ProcessStage, Readiness};

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    readiness: Readiness,
}

pub fn router(registry: Arc<Registry>, readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AppState { registry, readiness })
}

pub async fn serve(addr: SocketAddr, router: Router) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router).await
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.readiness.stage() {
        ProcessStage::Leading => (StatusCode::OK, "ready: leading"),
        ProcessStage::StandingBy => (StatusCode::OK, "ready: standing by (another replica leads)"),
        ProcessStage::WaitingForCrds => (StatusCode::SERVICE_UNAVAILABLE, "waiting for CRDs"),
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;
    use crate::metrics::Metrics;

    async fn get(router: Router, path: &str) -> (StatusCode, String) {
        let response = router.oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn app() -> (Router, Readiness, Metrics) {
        let mut registry = Registry::with_prefix("relevo");
        let metrics = Metrics::register(&mut registry);
        let readiness = Readiness::default();
        (router(Arc::new(registry), readiness.clone()), readiness, metrics)
    }

    #[tokio::test]
    async fn readyz_waits_for_the_crds_then_answers_for_a_standby_and_a_leader() {
        let (router, readiness, _) = app();
        assert_eq!(get(router.clone(), "/healthz").await.0, StatusCode::OK);
        assert_eq!(get(router.clone(), "/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
        readiness.set(ProcessStage::StandingBy);
        let (status, body) = get(router.clone(), "/readyz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ready: standing by (another replica leads)"));
        readiness.set(ProcessStage::Leading);
        assert_eq!(get(router, "/readyz").await, (StatusCode::OK, "ready: leading".to_string()));
    }

    #[tokio::test]
    async fn metrics_are_served_in_the_text_format() {
        let (router, _, metrics) = app();
        metrics.reconciled("pgcluster", std::time::Duration::from_millis(5), None);
        let (status, body) = get(router, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("relevo_reconciles_total"), "{body}");
        assert!(body.ends_with("# EOF\n"));
    }
}
