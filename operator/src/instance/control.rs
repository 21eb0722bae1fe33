//! The instance manager's direct channel: an HTTPS endpoint through which the operator
//! delivers fence and rebuild markers at once, instead of waiting for kubelet to refresh the
//! downward-API file (1.6–8.8 s measured for a fence, up to about a minute after a partition
//! heals). Both ends authenticate with the cluster's CA: the server presents the instance's
//! certificate, and only a client certificate signed by the same CA is accepted (mutual TLS).
//!
//! The pod annotations stay the durable record (they survive a container restart and reach a
//! pod that was unreachable), so a pushed part only *overrides* the file until the file has
//! caught up with it, or has moved on to something newer ([`Pushed::effective`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::rustls::ServerConfig;

use crate::protocol::markers::{DirectPart, FENCE_PATH, FenceMarkers, Markers, REBUILD_PATH, RebuildMarkers};

/// A pushed part, and what the file said of that part when it arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed<P> {
    pub wanted: P,
    pub file_at_push: Option<P>,
}

impl<P: DirectPart> Pushed<P> {
    /// The markers to act on: the pushed part over the file's, until the file shows it
    /// (kubelet caught up) or shows something else than at the push (a newer write).
    pub fn effective(pushed: &mut Option<Pushed<P>>, file: &Markers) -> Markers {
        let from_file = P::of(file);
        let Some(push) = pushed.as_mut() else { return file.clone() };
        let at_push = push.file_at_push.get_or_insert_with(|| from_file.clone()).clone();
        if from_file == push.wanted || from_file != at_push {
            *pushed = None;
            return file.clone();
        }
        push.wanted.over(file)
    }
}

/// Shared between the endpoint and the supervisor.
#[derive(Default)]
pub struct Channel {
    fence: Mutex<Option<Pushed<FenceMarkers>>>,
    rebuild: Mutex<Option<Pushed<RebuildMarkers>>>,
    /// Woken by every push, so the supervisor acts at once.
    pub wake: Notify,
}

impl Channel {
    pub fn effective(&self, file: &Markers) -> Markers {
        let fenced = Pushed::effective(&mut self.fence.lock().unwrap_or_else(PoisonError::into_inner), file);
        Pushed::effective(&mut self.rebuild.lock().unwrap_or_else(PoisonError::into_inner), &fenced)
    }

    fn push<P>(&self, slot: &Mutex<Option<Pushed<P>>>, wanted: P) {
        // `file_at_push` is filled at the next evaluation, from the file as it then reads.
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(Pushed { wanted, file_at_push: None });
        self.wake.notify_one();
    }
}

/// The TLS settings of the endpoint: this instance's certificate, and client certificates
/// of the same CA only.
pub fn server_config(ca: &Path, cert: &Path, key: &Path) -> Result<ServerConfig, String> {
    crate::tls::mutual_server_config(ca, cert, key)
}

pub fn router(channel: Arc<Channel>) -> Router {
    Router::new()
        .route(FENCE_PATH, post(receive_fence))
        .route(REBUILD_PATH, post(receive_rebuild))
        .with_state(channel)
}

async fn receive_fence(State(channel): State<Arc<Channel>>, body: Bytes) -> StatusCode {
    match serde_json::from_slice::<FenceMarkers>(&body) {
        Ok(wanted) => {
            channel.push(&channel.fence, wanted);
            StatusCode::NO_CONTENT
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

/// Only a whole rebuild request (token and source) is taken.
async fn receive_rebuild(State(channel): State<Arc<Channel>>, body: Bytes) -> StatusCode {
    match serde_json::from_slice::<RebuildMarkers>(&body) {
        Ok(wanted) if wanted.is_complete() => {
            channel.push(&channel.rebuild, wanted);
            StatusCode::NO_CONTENT
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

/// Serves the endpoint until the process ends.
pub async fn serve(addr: SocketAddr, config: ServerConfig, channel: Arc<Channel>) -> std::io::Result<()> {
    serve_on(TcpListener::bind(addr).await?, config, channel).await
}

/// [`serve`] on a socket already bound.
pub async fn serve_on(tcp: TcpListener, config: ServerConfig, channel: Arc<Channel>) -> std::io::Result<()> {
    let listener = crate::tls::TlsListener::new(tcp, config);
    axum::serve(listener, router(channel)).await
}

#[cfg(test)]
#[path = "control_tests.rs"]
mod tests;
