#!/usr/bin/env bash
# Builds the product images, loads them into the cluster and installs relevo
# with `kubectl apply -k manifests/`, then waits for the operator to be ready.
source "$(dirname "$0")/lib.sh"
"$REPO_ROOT/images/build.sh" postgres redis pgbouncer operator
"$E2E_DIR/cluster.sh" load "$POSTGRES_IMAGE" "$REDIS_IMAGE" "$PGBOUNCER_IMAGE" "$OPERATOR_IMAGE"
k apply -k "$REPO_ROOT/manifests" >/dev/null
# A rebuilt image under the same tag needs a new pod to be picked up.
k -n relevo-system rollout restart deployment/relevo-operator >/dev/null
k -n relevo-system rollout status deployment/relevo-operator --timeout=180s >/dev/null
say "relevo installed: $(k -n relevo-system get deploy relevo-operator -o jsonpath='{.status.readyReplicas}') operator pod ready"
