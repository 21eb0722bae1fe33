//! Minimal PgCluster objects parsed from YAML, as the apiserver would hand them over.

use crate::crd::PgCluster;

/// A stored PgCluster `db/demo` (uid and generation set) with the given `spec:` YAML.
/// serde applies the same defaults as the CRD schema, so the result is what the
/// controller would see.
pub fn cluster_from_yaml(spec_yaml: &str) -> PgCluster {
    let manifest = format!(
        "apiVersion: relevo.dev/v1alpha1\nkind: PgCluster\n\
         metadata: {{name: demo, namespace: db, uid: 6f1c2a4e-0000-4000-8000-000000000001, generation: 3}}\n\
         {spec_yaml}\n"
    );
    serde_saphyr::from_str(&manifest).unwrap_or_else(|e| panic!("fixture does not parse: {e}\n{manifest}"))
}
