#!/usr/bin/env bash
# One entry point for the cluster the tests run on:
#   e2e/cluster.sh up|down|kubeconfig|kubectl-path|load IMAGE...|check-clean
# RELEVO_CLUSTER=kind (the default) is three kind nodes with kind-config.yaml
# and a node image built offline (e2e/kind, images/kind-node);
# RELEVO_CLUSTER=local is the host-mode single node built from source
# (e2e/testbed), lighter, for quick work and the pod-partition story.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mode=${RELEVO_CLUSTER:-kind}

case "$mode:${1:-}" in
  local:up) exec "$here/testbed/up.sh" ;;
  local:down) exec "$here/testbed/down.sh" ;;
  local:kubeconfig) source "$here/testbed/lib.sh"; echo "$KUBECONFIG_ADMIN" ;;
  local:kubectl-path) source "$here/testbed/lib.sh"; echo "$BIN/kubectl" ;;
  local:load) shift; exec "$here/testbed/load-images.sh" "$@" ;;
  kind:up) exec "$here/kind/up.sh" ;;
  kind:down) exec "$here/kind/down.sh" ;;
  kind:kubeconfig) source "$here/kind/lib.sh"; echo "$KIND_KUBECONFIG" ;;
  kind:kubectl-path) source "$here/kind/lib.sh"; echo "$BIN/kubectl" ;;
  kind:load) shift; exec "$here/kind/load-images.sh" "$@" ;;
  kind:check-clean) exec "$here/kind/check-clean.sh" ;;
  local:check-clean) exec "$here/testbed/check-clean.sh" ;;
  *) echo "usage: RELEVO_CLUSTER=local|kind e2e/cluster.sh up|down|kubeconfig|kubectl-path|load IMAGE...|check-clean" >&2; exit 2 ;;
esac
