//! The cluster's certificates at the API edge: its CA, the pgBackRest leaf, PostgreSQL's
//! server certificate (issued and rotated, or copied from the user's Secret), the published
//! CA, and the reload that makes running instances present a renewed certificate. The
//! decisions are pure, in [`crate::pki`]; keys are never logged.

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use rustls::pki_types::{CertificateDer, pem::PemObject as _};
use tracing::{debug, info, warn};

use crate::crd::pgcluster::TlsSpec;
use crate::error::{Error, Result};
use crate::pki::{self, CertificateAuthority, CertifiedKey, Renewal};
use crate::postgres::{self, ClusterCa, Connection};
use crate::runtime::context::Context;
use crate::runtime::conventions::is_conflict;
use crate::runtime::kube_error;

use super::apply;
use super::builders::Owner;
use super::builders::pgbackrest::{CA_CERT_KEY, CA_KEY_KEY, ca_secret, tls_secret};
use super::builders::tls::{ServerTls, ca_config_map, server_secret};
use super::status::Problem;
use crate::protocol::names;
use crate::runtime::conventions::FIELD_MANAGER;

fn certificates(action: &'static str) -> impl FnOnce(pki::PkiError) -> Error {
    move |source| Error::Certificates { action, source }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The cluster CA: the stored one, or a new one when there is none. Never rewritten: pods and
/// applications trust the CA they were given.
pub async fn ensure_ca(ctx: &Context, owner: &Owner) -> Result<CertificateAuthority> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let ca_name = names::secret_pgbackrest_ca(&owner.name);
    if let Some(secret) = api.get_opt(&ca_name).await.map_err(kube_error("reading a Secret"))? {
        return stored_ca(secret);
    }
    let ca =
        CertificateAuthority::generate(&owner.name).map_err(certificates("generating the cluster CA"))?;
    let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() };
    match api.create(&params, &ca_secret(owner, ca.pem())).await {
        Ok(_) => {
            info!(secret = %ca_name, "created the cluster CA");
            Ok(ca)
        }
        // Another writer won the race: sign with its CA.
        Err(error) if is_conflict(&error) => {
            stored_ca(api.get(&ca_name).await.map_err(kube_error("reading a Secret"))?)
        }
        Err(source) => Err(kube_error("creating a Secret")(source)),
    }
}

fn stored_ca(secret: Secret) -> Result<CertificateAuthority> {
    let mut data = secret.data.unwrap_or_default();
    let mut take =
        |key: &str| data.remove(key).and_then(|bytes| String::from_utf8(bytes.0).ok()).unwrap_or_default();
    let pem = CertifiedKey { cert_pem: take(CA_CERT_KEY), key_pem: take(CA_KEY_KEY) };
    CertificateAuthority::from_pem(pem).map_err(certificates("reading the stored cluster CA"))
}

/// Creates the pgBackRest TLS Secret when missing, and never rewrites it (see
/// [`pki::PGBACKREST_LEAF_VALIDITY_DAYS`](crate::pki)). A missing one is re-issued from the
/// stored CA, so pods that still run keep trusting the new leaf.
pub async fn ensure_pgbackrest_certificates(ctx: &Context, owner: &Owner) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let tls_name = names::secret_pgbackrest_tls(&owner.name);
    if api.get_opt(&tls_name).await.map_err(kube_error("reading a Secret"))?.is_some() {
        return Ok(());
    }
    let ca = ensure_ca(ctx, owner).await?;
    let leaf = pki::pgbackrest_leaf(&ca, &owner.name, &owner.namespace)
        .map_err(certificates("issuing the pgBackRest certificate"))?;
    let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() };
    match api.create(&params, &tls_secret(owner, &ca.pem().cert_pem, &leaf)).await {
        Ok(_) => info!(secret = %tls_name, "created the pgBackRest TLS certificate"),
        Err(error) if is_conflict(&error) => {}
        Err(source) => return Err(kube_error("creating a Secret")(source)),
    }
    Ok(())
}

/// Makes `<cluster>-server-tls` hold a good server certificate, and `<cluster>-ca` its CA.
/// Returns what the instances now mount, or the problem with the user's Secret (the cluster
/// is then Degraded with it, and what runs keeps its current certificate).
pub async fn ensure_server_tls(
    ctx: &Context,
    owner: &Owner,
    spec: &TlsSpec,
) -> Result<std::result::Result<ServerTls, Problem>> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let current = api
        .get_opt(&names::secret_server_tls(&owner.name))
        .await
        .map_err(kube_error("reading a Secret"))?
        .as_ref()
        .and_then(ServerTls::from_secret);
    let wanted = match &spec.server_secret {
        Some(name) => match user_certificate(&api, owner, name).await? {
            Ok(tls) => tls,
            Err(problem) => return Ok(Err(problem)),
        },
        None => match issued_certificate(ctx, owner, current.as_ref()).await? {
            Some(tls) => tls,
            None => current.clone().ok_or_else(|| Error::Missing {
                kind: "server certificate",
                name: names::secret_server_tls(&owner.name),
            })?,
        },
    };
    if current.as_ref() != Some(&wanted) {
        apply::apply(ctx, owner, &server_secret(owner, &wanted), "applying the server TLS Secret").await?;
    }
    apply::apply(ctx, owner, &ca_config_map(owner, &wanted.ca_pem), "applying the CA ConfigMap").await?;
    Ok(Ok(wanted))
}

/// A new certificate from the cluster CA when [`pki::renewal_due`] says so; `None` keeps
/// `current`.
async fn issued_certificate(
    ctx: &Context,
    owner: &Owner,
    current: Option<&ServerTls>,
) -> Result<Option<ServerTls>> {
    let ca = ensure_ca(ctx, owner).await?;
    let wanted_names = pki::postgres_dns_names(&owner.name, &owner.namespace);
    let reason = match current {
        None => "there is none".to_string(),
        Some(current) => {
            let facts = pki::certificate_facts(&current.cert_pem);
            let ca_facts = pki::certificate_facts(&ca.pem().cert_pem);
            match (facts, ca_facts) {
                (Ok(facts), Ok(ca_facts)) => {
                    match pki::renewal_due(&facts, &ca_facts, &wanted_names, now()) {
                        Renewal::NotDue if current.ca_pem == ca.pem().cert_pem => return Ok(None),
                        Renewal::NotDue => "the published CA is not the cluster CA".to_string(),
                        Renewal::Due(reason) => reason,
                    }
                }
                (Err(error), _) | (_, Err(error)) => format!("it is unreadable ({error})"),
            }
        }
    };
    let leaf = pki::postgres_server_leaf(&ca, &owner.name, &owner.namespace)
        .map_err(certificates("issuing PostgreSQL's server certificate"))?;
    info!(secret = %names::secret_server_tls(&owner.name), %reason, "issuing PostgreSQL's server certificate");
    Ok(Some(ServerTls { cert_pem: leaf.cert_pem, key_pem: leaf.key_pem, ca_pem: ca.pem().cert_pem.clone() }))
}

/// Makes `<cluster>-pooler-tls` hold a certificate of the cluster CA for the pooler's
/// Service names, issued when missing and renewed by the same rule as PostgreSQL's.
pub async fn ensure_pooler_certificate(ctx: &Context, owner: &Owner) -> Result<()> {
    use super::builders::pooler::tls_secret;
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let name = names::secret_pooler_tls(&owner.name);
    let current = api.get_opt(&name).await.map_err(kube_error("reading a Secret"))?;
    let current = current.as_ref().and_then(ServerTls::from_secret);
    let ca = ensure_ca(ctx, owner).await?;
    let wanted_names = pki::pooler_dns_names(&owner.name, &owner.namespace);
    if let Some(current) = &current
        && current.ca_pem == ca.pem().cert_pem
        && let (Ok(facts), Ok(ca_facts)) =
            (pki::certificate_facts(&current.cert_pem), pki::certificate_facts(&ca.pem().cert_pem))
        && pki::renewal_due(&facts, &ca_facts, &wanted_names, now()) == Renewal::NotDue
    {
        return Ok(());
    }
    let leaf = pki::pooler_server_leaf(&ca, &owner.name, &owner.namespace)
        .map_err(certificates("issuing the pooler's certificate"))?;
    apply::apply(ctx, owner, &tls_secret(owner, &ca.pem().cert_pem, &leaf), "applying the pooler TLS Secret")
        .await?;
    info!(secret = %name, "issued the pooler's certificate");
    Ok(())
}

/// The user's Secret, checked: complete, readable, valid now, naming what relevo dials.
async fn user_certificate(
    api: &Api<Secret>,
    owner: &Owner,
    name: &str,
) -> Result<std::result::Result<ServerTls, Problem>> {
    let problem = |message: String| Ok(Err(Problem { reason: "ServerCertificateInvalid", message }));
    let Some(secret) = api.get_opt(name).await.map_err(kube_error("reading a Secret"))? else {
        return problem(format!("spec.tls.serverSecret: Secret {name} does not exist"));
    };
    let Some(tls) = ServerTls::from_secret(&secret) else {
        return problem(format!(
            "spec.tls.serverSecret: Secret {name} must hold tls.crt, tls.key and ca.crt"
        ));
    };
    if let Err(error) = ClusterCa::from_pem(&tls.ca_pem) {
        return problem(format!("spec.tls.serverSecret: ca.crt of Secret {name}: {error}"));
    }
    let required = pki::postgres_required_names(&owner.name, &owner.namespace);
    let checked = pki::certificate_facts(&tls.cert_pem)
        .and_then(|facts| pki::check_user_certificate(&facts, &required, now()));
    match checked {
        Ok(()) => Ok(Ok(tls)),
        Err(error) => problem(format!("spec.tls.serverSecret: tls.crt of Secret {name}: {error}")),
    }
}

/// The CA the cluster's server certificate chains to, as the instances mount it (never the
/// published ConfigMap, which more people may edit). `None` before the first reconcile.
pub async fn read_cluster_ca(ctx: &Context, namespace: &str, cluster: &str) -> Result<Option<ClusterCa>> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret =
        api.get_opt(&names::secret_server_tls(cluster)).await.map_err(kube_error("reading a Secret"))?;
    let ca_pem = secret
        .and_then(|secret| secret.data)
        .and_then(|mut data| data.remove(CA_CERT_KEY))
        .and_then(|bytes| String::from_utf8(bytes.0).ok());
    Ok(ca_pem.and_then(|pem| match ClusterCa::from_pem(&pem) {
        Ok(ca) => Some(ca),
        Err(error) => {
            warn!(cluster, %error, "the server TLS Secret holds no usable CA");
            None
        }
    }))
}

/// Asks every instance that still presents another certificate than `tls` to reload its
/// configuration: the kubelet swaps the mounted files within a minute or so of a renewal,
/// and `pg_reload_conf()` then makes PostgreSQL read them. Failures wait for the next round.
pub async fn reload_where_stale(ctx: &Context, owner: &Owner, pods: &[Pod], tls: &ServerTls, password: &str) {
    let Ok(expected) = CertificateDer::from_pem_slice(tls.cert_pem.as_bytes()) else { return };
    let Ok(ca) = ClusterCa::from_pem(&tls.ca_pem) else { return };
    for pod in pods {
        let Some(host) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else { continue };
        let Some(instance) = pod.labels().get(names::LABEL_PG_INSTANCE).cloned() else { continue };
        let connection = Connection {
            host,
            server_name: names::pod_fqdn(&owner.name, &instance, &owner.namespace),
            superuser_password: password,
            ca: &ca,
            timeout: ctx.config.postgres_timeout,
            connect_timeout: None,
        };
        match postgres::presented_certificate(&connection.target(), &ca).await {
            Ok(presented) if presented == expected.as_ref() => continue,
            Ok(_) => {}
            Err(error) => {
                debug!(instance, %error, "no TLS handshake to compare certificates");
                continue;
            }
        }
        let reload = async {
            let client = connection.connect().await?;
            client.execute("SELECT pg_reload_conf()", &[]).await?;
            Ok::<_, postgres::PgError>(())
        };
        match reload.await {
            Ok(()) => info!(instance, "asked PostgreSQL to reload its renewed server certificate"),
            Err(error) => debug!(instance, %error, "pg_reload_conf() did not run"),
        }
    }
}
