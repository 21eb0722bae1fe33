#!/usr/bin/env bash
# `make up`: a working local demo from nothing. The cluster, the images,
# relevo from manifests/, and the samples; then it waits for a Ready cluster.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/cluster.sh" up
source "$here/lib.sh"
"$E2E_DIR/install.sh"
k apply -f "$REPO_ROOT/manifests/samples/pgcluster.yaml" -f "$REPO_ROOT/manifests/samples/backupschedule.yaml" >/dev/null
say "waiting for the sample PgCluster to be Ready"
k wait --for=condition=Ready pgclusters.relevo.dev/demo --timeout=300s >/dev/null
k get pgclusters.relevo.dev
cat <<MSG

relevo is up. Try:
  export KUBECONFIG=$KUBECONFIG
  kubectl get pgclusters.relevo.dev,pods
  kubectl apply -f manifests/samples/switchover.yaml
MSG
