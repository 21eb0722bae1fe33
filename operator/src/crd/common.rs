//! Schema pieces shared by the four CRDs: regex patterns the apiserver enforces, and the
//! condition type. Patterns live here once so the CRD schema and the operator's own parsing
//! (see [`crate::duration`]) agree on what a valid value is.

/// API group of every relevo resource.
pub const GROUP: &str = "relevo.dev";
/// The only served and stored version so far.
pub const VERSION: &str = "v1alpha1";

/// A positive Kubernetes quantity as used for volume sizes ("1Gi", "500Mi", "10G").
/// Stricter than the general quantity grammar on purpose: no sign, no exponent, no milli,
/// because none of those make sense for a disk.
pub const STORAGE_SIZE_PATTERN: &str =
    r"^([1-9][0-9]*|[0-9]+\.[0-9]*[1-9][0-9]*)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$";

/// A Kubernetes quantity ("500m", "512Mi", "2", "1e3"): the grammar of `resource.Quantity`,
/// which controller-gen also publishes. k8s-openapi's schema of a quantity is a bare
/// int-or-string, so without it `kubectl apply` takes `memory: lots` and only the StatefulSet
/// apply fails later. A pattern checks strings only, so `cpu: 2` (an integer) stays valid.
pub const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// Schema transform for a `ResourceRequirements` field: every value of `limits` and
/// `requests` must match [`QUANTITY_PATTERN`].
pub fn resource_quantities(schema: &mut schemars::Schema) {
    fn walk(object: &mut serde_json::Map<String, serde_json::Value>) {
        if let Some(properties) = object.get_mut("properties").and_then(|p| p.as_object_mut()) {
            for map in ["limits", "requests"] {
                if let Some(values) = properties.get_mut(map).and_then(|m| m.get_mut("additionalProperties"))
                    && let Some(values) = values.as_object_mut()
                {
                    values.insert("pattern".into(), QUANTITY_PATTERN.into());
                }
            }
        }
        // An optional field may wrap the object (anyOf with null, allOf with a reference).
        for nested in ["anyOf", "allOf", "oneOf"] {
            if let Some(list) = object.get_mut(nested).and_then(|l| l.as_array_mut()) {
                list.iter_mut().filter_map(|s| s.as_object_mut()).for_each(walk);
            }
        }
    }
    if let Some(object) = schema.as_object_mut() {
        walk(object);
    }
}

/// A Go-style duration ("5s", "1m30s", "500ms", "24h"): what users know from Kubernetes.
/// Signs are not part of the grammar, so "-5s" is refused by the schema itself.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// RFC 3339 timestamp with a mandatory zone, e.g. "2025-10-07T12:00:00Z".
pub const RFC3339_PATTERN: &str =
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$";

/// A DNS-1123 label, which is what a PgCluster name must be to become Service and Pod names.
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// Names of StorageClasses, Secrets and clusters are DNS subdomains.
pub const DNS_SUBDOMAIN_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A standard five-field cron expression ("0 2 * * *"). The operator parses it for real;
/// the pattern only catches the wrong number of fields early, at `kubectl apply`.
pub const CRON_PATTERN: &str = r"^\S+\s+\S+\s+\S+\s+\S+\s+\S+$";

/// Status of one condition, in the standard `metav1.Condition` shape that `kubectl wait
/// --for=condition=Ready` understands.
pub type Condition = k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// Printer column for the age of an object, shared by every CRD.
pub const AGE_COLUMN_PATH: &str = ".metadata.creationTimestamp";
