//! Growing volumes in place. A StatefulSet's `volumeClaimTemplates` are immutable, so an
//! edited `size` never reaches the templates: they keep the size they were created with
//! ([`template_size`]), and each existing claim is grown by a patch of its own
//! `spec.resources.requests.storage` ([`grow`]). The API server refuses that patch when the
//! claim's StorageClass does not allow expansion; the cluster is then Degraded with its
//! answer, and nothing else changes. A size below what a claim holds is Degraded too
//! (volumes never shrink), not refused by the schema: the schema sees only the old spec, and
//! would then forbid setting a refused expansion back. Another StorageClass is refused at
//! `kubectl apply`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::error::Result;
use crate::runtime::context::Context;
use crate::runtime::conventions::FIELD_MANAGER;
use crate::runtime::kube_error;

use super::builders::Owner;
use super::status::Problem;

pub const REASON_REFUSED: &str = "VolumeExpansionRefused";
pub const REASON_SHRINK: &str = "VolumeShrinkRefused";

/// One claim that should hold at least `wanted`, and the spec field that asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub claim: String,
    pub wanted: String,
    pub field: &'static str,
}

/// The storage a claim (or a claim template) requests, if it says.
pub fn requested(claim: &PersistentVolumeClaim) -> Option<&str> {
    let requests = claim.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?;
    requests.get("storage").map(|q| q.0.as_str())
}

/// The size the first claim template of an existing StatefulSet was created with: the one a
/// later apply must send again, since the API server refuses any change to it.
pub fn template_size(existing: Option<&StatefulSet>) -> Option<String> {
    let templates = existing?.spec.as_ref()?.volume_claim_templates.as_ref()?;
    templates.first().and_then(requested).map(str::to_owned)
}

/// Bytes of a Kubernetes quantity as relevo's schema allows it (`1Gi`, `500Mi`, `1.5G`, `10`),
/// rounded up; `None` for anything else.
pub fn bytes(quantity: &str) -> Option<u128> {
    let split = quantity.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(split);
    let unit: u128 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.len() > 18 {
        return None;
    }
    let parse = |digits: &str| if digits.is_empty() { Some(0) } else { digits.parse::<u128>().ok() };
    let scale = 10u128.pow(fraction.len() as u32);
    let fractional = parse(fraction)?.checked_mul(unit)?;
    parse(whole)?.checked_mul(unit)?.checked_add(fractional.div_ceil(scale))
}

/// How a claim requesting `current` compares with the `wanted` size; `None` when either is
/// unparsable (the schema admits neither).
pub fn compare(current: &str, wanted: &str) -> Option<std::cmp::Ordering> {
    Some(bytes(wanted)?.cmp(&bytes(current)?))
}

/// The claims of a cluster and the sizes its spec asks for: each instance's data volume, the
/// repository's, and the managed Redis'.
pub fn wanted_claims(
    cluster: &str,
    spec: &crate::crd::PgClusterSpec,
    instances: impl IntoIterator<Item = String>,
) -> Vec<Wanted> {
    use crate::protocol::names;
    let mut claims: Vec<Wanted> = instances
        .into_iter()
        .map(|instance| Wanted {
            claim: names::data_pvc(&instance),
            wanted: spec.storage.size.clone(),
            field: "spec.storage.size",
        })
        .collect();
    claims.push(Wanted {
        claim: names::repo_pvc(cluster),
        wanted: spec.backup.repo_storage.size.clone(),
        field: "spec.backup.repoStorage.size",
    });
    if let Some(redis) = &spec.redis.managed {
        claims.push(Wanted {
            claim: names::redis(cluster),
            wanted: redis.storage.size.clone(),
            field: "spec.redis.managed.storage.size",
        });
    }
    claims
}

/// An existing claim whose request differs from what the spec asks: `from` is its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<'a> {
    pub wanted: &'a Wanted,
    pub from: String,
    pub grow: bool,
}

/// The claims of `wanted` that exist in `claims` and request another size. A claim not
/// created yet is left to its StatefulSet, which creates it from the spec's size.
pub fn changes<'a>(wanted: &'a [Wanted], claims: &[PersistentVolumeClaim]) -> Vec<Change<'a>> {
    use std::cmp::Ordering::{Greater, Less};
    wanted
        .iter()
        .filter_map(|w| {
            let claim = claims.iter().find(|c| c.metadata.name.as_deref() == Some(w.claim.as_str()))?;
            let from = requested(claim)?;
            let grow = match compare(from, &w.wanted)? {
                Greater => true,
                Less => false,
                _ => return None,
            };
            Some(Change { wanted: w, from: from.to_owned(), grow })
        })
        .collect()
}

/// The cluster's volume claims: one LIST by the cluster label, which every claim relevo
/// creates carries (templates pass their labels on).
pub async fn list_claims(ctx: &Context, owner: &Owner) -> Result<Vec<PersistentVolumeClaim>> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let selector = format!("{}={}", crate::protocol::names::LABEL_CLUSTER, owner.name);
    let list = api.list(&ListParams::default().labels(&selector)).await;
    Ok(list.map_err(kube_error("listing volume claims"))?.items)
}

/// Grows each claim of `changes` that must grow. The first claim that cannot follow the spec
/// (a refused expansion, a spec below what a claim holds) is the problem returned; the other
/// claims are still grown. Any other API error ends the pass.
pub async fn grow(ctx: &Context, owner: &Owner, changes: &[Change<'_>]) -> Result<Option<Problem>> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let mut problem = None;
    for Change { wanted: Wanted { claim, wanted, field }, from, grow } in changes {
        if !grow {
            problem.get_or_insert(Problem {
                reason: REASON_SHRINK,
                message: format!(
                    "{field}: {wanted} is less than volume claim {claim} holds ({from}), and volumes \
                     never shrink; set {field} to at least {from}"
                ),
            });
            continue;
        }
        let patch = json!({"spec": {"resources": {"requests": BTreeMap::from([("storage", wanted)])}}});
        match api.patch(claim, &PatchParams::apply(FIELD_MANAGER), &Patch::Merge(&patch)).await {
            Ok(_) => tracing::info!(claim, %from, to = %wanted, "growing a volume"),
            Err(kube::Error::Api(refused)) if matches!(refused.code, 403 | 422) => {
                tracing::warn!(claim, %from, to = %wanted, reason = %refused.message, "volume expansion refused");
                problem.get_or_insert(Problem {
                    reason: REASON_REFUSED,
                    message: format!(
                        "{field}: volume claim {claim} cannot grow from {from} to {wanted}: {} \
                         (set {field} back to {from}, or allow expansion in its StorageClass)",
                        refused.message
                    ),
                });
            }
            Err(error) => return Err(kube_error("growing a volume claim")(error)),
        }
    }
    Ok(problem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_in_bytes() {
        assert_eq!(bytes("1Gi"), Some(1 << 30));
        assert_eq!(bytes("500Mi"), Some(500 << 20));
        assert_eq!(bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(bytes("2G"), Some(2_000_000_000));
        assert_eq!(bytes("10"), Some(10));
        assert_eq!(bytes("0.5"), Some(1), "rounded up");
        assert_eq!(bytes("1Xi"), None);
        assert_eq!(bytes(""), None);
        assert_eq!(bytes("."), None);
        assert_eq!(bytes("1.2.3Gi"), None);
    }

    #[test]
    fn sizes_compare_by_bytes() {
        use std::cmp::Ordering::*;
        assert_eq!(compare("1Gi", "2Gi"), Some(Greater));
        assert_eq!(compare("1Gi", "1025Mi"), Some(Greater));
        assert_eq!(compare("1Gi", "1024Mi"), Some(Equal), "the same size written another way");
        assert_eq!(compare("2Gi", "1Gi"), Some(Less));
        assert_eq!(compare("1Gi", "lots"), None);
    }

    fn claim(name: &str, storage: &str) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"resources": {"requests": {"storage": storage}}}
        }))
        .unwrap()
    }

    #[test]
    fn only_existing_claims_of_another_size_change() {
        let wanted =
            |claim: &str, size: &str| Wanted { claim: claim.into(), wanted: size.into(), field: "f" };
        let wanted = [wanted("a", "2Gi"), wanted("b", "2Gi"), wanted("c", "2Gi"), wanted("absent", "2Gi")];
        let claims = [claim("a", "1Gi"), claim("b", "2048Mi"), claim("c", "3Gi"), claim("other", "1Gi")];
        assert_eq!(
            changes(&wanted, &claims),
            [
                Change { wanted: &wanted[0], from: "1Gi".into(), grow: true },
                Change { wanted: &wanted[2], from: "3Gi".into(), grow: false },
            ]
        );
    }

    #[test]
    fn the_template_keeps_its_creation_size() {
        let sts: StatefulSet = serde_json::from_value(json!({
            "spec": {"selector": {}, "serviceName": "x", "template": {},
                     "volumeClaimTemplates": [{"spec": {"resources": {"requests": {"storage": "1Gi"}}}}]}
        }))
        .unwrap();
        assert_eq!(template_size(Some(&sts)).as_deref(), Some("1Gi"));
        assert_eq!(template_size(None), None);
    }

    #[test]
    fn every_volume_of_the_cluster_is_wanted() {
        let spec: crate::crd::PgClusterSpec = serde_json::from_value(json!({
            "storage": {"size": "3Gi"}, "backup": {"repoStorage": {"size": "5Gi"}},
            "redis": {"managed": {"storage": {"size": "1Gi"}}}
        }))
        .unwrap();
        let wanted = wanted_claims("demo", &spec, ["demo-1".to_string(), "demo-2".to_string()]);
        let rows: Vec<(&str, &str, &str)> =
            wanted.iter().map(|w| (w.claim.as_str(), w.wanted.as_str(), w.field)).collect();
        assert_eq!(
            rows,
            [
                ("pgdata-demo-1-0", "3Gi", "spec.storage.size"),
                ("pgdata-demo-2-0", "3Gi", "spec.storage.size"),
                ("repo-demo-repo-0", "5Gi", "spec.backup.repoStorage.size"),
                ("demo-redis", "1Gi", "spec.redis.managed.storage.size"),
            ]
        );
    }
}
