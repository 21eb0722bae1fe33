//! The operator's end of the instance manager's direct channel (see
//! [`crate::instance::control`]), used for fences and rebuilds by the Switchover executor
//! and for rebuilds by the PgCluster reconcile: one HTTPS request to the pod's own address, verified
//! against the cluster's CA under the pod's DNS name, with the cluster's certificate as the
//! client's. Best effort by design: the pod annotation written just before is the record the
//! instance manager falls back on.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::pgcluster::builders::pgbackrest::{CA_CERT_KEY, TLS_CERT_KEY, TLS_KEY_KEY};
use crate::protocol::markers::{FENCE_PATH, FenceMarkers, REBUILD_PATH, RebuildMarkers};
use crate::protocol::names;

/// The whole exchange, connection included, is bounded by this.
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// The cluster's CA, certificate and key, as PEM.
pub struct ClusterTls {
    pub ca_pem: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl ClusterTls {
    pub async fn read(client: &kube::Client, namespace: &str, cluster: &str) -> Result<Self, String> {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let name = names::secret_pgbackrest_tls(cluster);
        let secret = api.get(&name).await.map_err(|e| format!("reading Secret {name}: {e}"))?;
        let data = secret.data.unwrap_or_default();
        let get = |key: &str| data.get(key).map(|v| v.0.clone()).ok_or(format!("Secret {name} lacks {key}"));
        Ok(Self { ca_pem: get(CA_CERT_KEY)?, cert_pem: get(TLS_CERT_KEY)?, key_pem: get(TLS_KEY_KEY)? })
    }

    pub fn client_config(&self) -> Result<ClientConfig, String> {
        let roots = crate::tls::roots(&self.ca_pem).map_err(|e| e.to_string())?;
        let (chain, key) = crate::tls::identity(&self.cert_pem, &self.key_pem).map_err(|e| e.to_string())?;
        ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| e.to_string())
    }
}

/// Where an instance manager listens: its pod's address and
/// [`crate::protocol::markers::PORT`], and the name its certificate must carry (the pod's DNS
/// name).
pub struct Endpoint<'a> {
    pub address: &'a str,
    pub port: u16,
    pub server_name: &'a str,
}

/// Sends the fence markers the operator wants now.
pub async fn push(config: ClientConfig, to: &Endpoint<'_>, markers: &FenceMarkers) -> Result<(), String> {
    post(config, to, FENCE_PATH, serde_json::to_vec(markers)).await
}

/// Sends the rebuild the operator wants now.
pub async fn push_rebuild(
    config: ClientConfig,
    to: &Endpoint<'_>,
    markers: &RebuildMarkers,
) -> Result<(), String> {
    post(config, to, REBUILD_PATH, serde_json::to_vec(markers)).await
}

async fn post(
    config: ClientConfig,
    to: &Endpoint<'_>,
    path: &str,
    body: serde_json::Result<Vec<u8>>,
) -> Result<(), String> {
    let body = body.map_err(|e| e.to_string())?;
    let (status, _) =
        exchange(config, (to.address, to.port), to.server_name, "POST", path, body, TIMEOUT).await?;
    if status.is_success() { Ok(()) } else { Err(format!("the instance answered {status}")) }
}

/// One HTTPS request over the cluster's mutual TLS to a pod's own address, which must present
/// a certificate for `server_name`; the whole exchange is bounded by `timeout`. The direct
/// channels of the instance pods and of the pooler pods both use it.
pub async fn exchange(
    config: ClientConfig,
    (address, port): (&str, u16),
    server_name: &str,
    method: &str,
    path: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(hyper::StatusCode, Bytes), String> {
    let name = ServerName::try_from(server_name.to_owned()).map_err(|e| e.to_string())?;
    let exchange = async {
        let tcp = TcpStream::connect((address, port)).await.map_err(|e| format!("connecting: {e}"))?;
        let tls =
            TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, server_name)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| "no answer in time".to_string())?
}
