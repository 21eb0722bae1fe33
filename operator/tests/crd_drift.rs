//! The committed CRD YAML in crds/ must be exactly what the Rust types generate.

use std::path::Path;

#[test]
fn committed_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let fix = "run `cargo run -p relevo -- crdgen --out-dir crds` and commit the result";
    let committed = std::fs::read_to_string(dir.join(relevo::crd::KUSTOMIZATION_FILE))
        .unwrap_or_else(|e| panic!("crds/kustomization.yaml is missing ({e}): {fix}"));
    assert!(committed == relevo::crd::kustomization(), "crds/kustomization.yaml is out of date: {fix}");
    let mut expected_files = vec![relevo::crd::KUSTOMIZATION_FILE.to_string()];
    for crd in relevo::crd::all() {
        let name = relevo::crd::file_name(&crd);
        let generated = relevo::crd::to_yaml(&crd).unwrap();
        let committed = std::fs::read_to_string(dir.join(&name))
            .unwrap_or_else(|e| panic!("crds/{name} is missing ({e}): {fix}"));
        assert!(committed == generated, "crds/{name} is out of date with the Rust types: {fix}");
        expected_files.push(name);
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    present.sort();
    expected_files.sort();
    assert_eq!(present, expected_files, "crds/ holds a CRD the types no longer define: {fix}");
}
