#!/usr/bin/env bash
# One entry point for the cluster the tests run on:
#   e2e/cluster.sh up|down|kubeconfig|kubectl-path|load IMAGE...
# RELEVO_CLUSTER=local (default) is the offline test bed built from source;
# RELEVO_CLUSTER=kind uses kind with kind-config.yaml, for machines online.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
mode=${RELEVO_CLUSTER:-local}
kind_kubeconfig=${RELEVO_CACHE:-/var/cache/relevo}/kind.kubeconfig

case "$mode:${1:-}" in
  local:up) exec "$here/testbed/up.sh" ;;
  local:down) exec "$here/testbed/down.sh" ;;
  local:kubeconfig) source "$here/testbed/lib.sh"; echo "$KUBECONFIG_ADMIN" ;;
  local:kubectl-path) source "$here/testbed/lib.sh"; echo "$BIN/kubectl" ;;
  local:load) shift; exec "$here/testbed/load-images.sh" "$@" ;;
  kind:up)
    kind get clusters 2>/dev/null | grep -qx relevo \
      || kind create cluster --name relevo --config "$root/kind-config.yaml"
    mkdir -p "$(dirname "$kind_kubeconfig")"
    kind get kubeconfig --name relevo >"$kind_kubeconfig" ;;
  kind:down) kind delete cluster --name relevo; rm -f "$kind_kubeconfig" ;;
  kind:kubeconfig) echo "$kind_kubeconfig" ;;
  kind:kubectl-path) command -v kubectl ;;
  kind:load) shift; exec kind load docker-image --name relevo "$@" ;;
  *) echo "usage: RELEVO_CLUSTER=local|kind e2e/cluster.sh up|down|kubeconfig|kubectl-path|load IMAGE..." >&2; exit 2 ;;
esac
