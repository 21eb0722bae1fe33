#!/usr/bin/env bash
# Deletes the kind cluster and everything it left on this machine: node
# containers and their volumes, the podman network, the routes into the
# cluster and the FORWARD rule. The node images stay cached. Safe at any time.
source "$(dirname "$0")/lib.sh"
set +e

if [[ -x $KIND ]]; then
  "$KIND" delete cluster --name "$KIND_CLUSTER" >/dev/null 2>&1
fi
# Whatever kind did not remove (say, a half-created cluster).
for node in "${KIND_NODES[@]}"; do
  podman container exists "$node" 2>/dev/null && podman rm -f -v "$node" >/dev/null
done
kind_forward_rule -D
if podman network exists "$KIND_NETWORK" 2>/dev/null; then
  podman network rm -f "$KIND_NETWORK" >/dev/null
fi
for range in "$KIND_SERVICE_CIDR" "$KIND_POD_CIDR"; do
  for route in $(ip -4 route show to root "$range" | awk '{print $1}'); do
    ip route delete "$route"
  done
done
rm -rf "$KIND_STATE"
log "kind cluster down"
