//! PostgreSQL's TLS objects: the server certificate Secret the instance pods mount, and the
//! ConfigMap that publishes its CA to applications. The certificate itself comes from
//! [`crate::pki`] (or the user's Secret, copied by `pgcluster::certificates`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, SecretVolumeSource, Volume, VolumeMount};

use crate::protocol::layout;
use crate::protocol::names;

use super::Owner;
use super::pgbackrest::{CA_CERT_KEY, TLS_CERT_KEY, TLS_KEY_KEY};
use super::pod::mount;

/// Volume of the server TLS Secret in the instance pods.
pub const SERVER_TLS_VOLUME: &str = "server-tls";
/// Mode of the mounted files. PostgreSQL refuses a key readable by others; owned by root
/// (the kubelet) with the pod's fsGroup as group, 0440 lets uid 999 read it and passes
/// PostgreSQL's check (root-owned keys may be group-readable, never group-writable).
pub const SERVER_TLS_FILE_MODE: i32 = 0o440;

/// The certificate, its key and its CA, PEM. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerTls {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads the three keys of a Secret's data; `None` when one is missing or not UTF-8.
    pub fn from_secret(secret: &Secret) -> Option<Self> {
        let data = secret.data.as_ref()?;
        let text = |key: &str| data.get(key).and_then(|bytes| String::from_utf8(bytes.0.clone()).ok());
        Some(Self { cert_pem: text(TLS_CERT_KEY)?, key_pem: text(TLS_KEY_KEY)?, ca_pem: text(CA_CERT_KEY)? })
    }
}

/// `<cluster>-server-tls`, what the instance pods mount.
pub fn server_secret(owner: &Owner, tls: &ServerTls) -> Secret {
    Secret {
        metadata: owner.child_meta(names::secret_server_tls(&owner.name), "postgres-tls"),
        type_: Some("kubernetes.io/tls".into()),
        string_data: Some(BTreeMap::from([
            (TLS_CERT_KEY.to_string(), tls.cert_pem.clone()),
            (TLS_KEY_KEY.to_string(), tls.key_pem.clone()),
            (CA_CERT_KEY.to_string(), tls.ca_pem.clone()),
        ])),
        ..Secret::default()
    }
}

/// `<cluster>-ca`: the CA certificate (public), for applications to verify the server with.
pub fn ca_config_map(owner: &Owner, ca_pem: &str) -> ConfigMap {
    ConfigMap {
        metadata: owner.child_meta(names::config_map_ca(&owner.name), "postgres-tls"),
        data: Some(BTreeMap::from([(CA_CERT_KEY.to_string(), ca_pem.to_string())])),
        ..ConfigMap::default()
    }
}

pub fn server_volume(cluster: &str) -> Volume {
    Volume {
        name: SERVER_TLS_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(names::secret_server_tls(cluster)),
            default_mode: Some(SERVER_TLS_FILE_MODE),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// Mounted as a directory, never with subPath: the kubelet then swaps in a renewed
/// certificate, and `pg_reload_conf()` picks it up.
pub fn server_mount() -> VolumeMount {
    mount(SERVER_TLS_VOLUME, layout::TLS_DIR, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgcluster::test_fixtures::cluster_from_yaml;

    fn tls() -> ServerTls {
        ServerTls { cert_pem: "CERT".into(), key_pem: "KEY".into(), ca_pem: "CA".into() }
    }

    #[test]
    fn the_secret_holds_what_postgresql_reads_and_the_ca_is_public() {
        let owner = Owner::of(&cluster_from_yaml("spec: {}")).unwrap();
        let secret = server_secret(&owner, &tls());
        assert_eq!(secret.metadata.name.as_deref(), Some("demo-server-tls"));
        let data = secret.string_data.unwrap();
        let file = |path: &str| path.rsplit('/').next().unwrap().to_string();
        for path in [layout::SERVER_CERT_FILE, layout::SERVER_KEY_FILE, layout::CA_FILE] {
            assert!(data.contains_key(&file(path)), "{path} is not in the Secret");
        }
        let config_map = ca_config_map(&owner, "CA");
        assert_eq!(config_map.metadata.name.as_deref(), Some("demo-ca"));
        assert_eq!(config_map.data.unwrap(), BTreeMap::from([("ca.crt".to_string(), "CA".to_string())]));
        assert!(!format!("{:?}", tls()).contains("KEY"));
    }

    #[test]
    fn secrets_are_read_back_only_when_complete() {
        let owner = Owner::of(&cluster_from_yaml("spec: {}")).unwrap();
        let mut secret = server_secret(&owner, &tls());
        secret.data = secret.string_data.take().map(|data| {
            data.into_iter().map(|(k, v)| (k, k8s_openapi::ByteString(v.into_bytes()))).collect()
        });
        assert_eq!(ServerTls::from_secret(&secret), Some(tls()));
        secret.data.as_mut().unwrap().remove("ca.crt");
        assert_eq!(ServerTls::from_secret(&secret), None);
    }
}
