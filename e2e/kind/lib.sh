# Shared settings of the three-node kind cluster (RELEVO_CLUSTER=kind). Sourced.
#
# kind runs its nodes with podman (Debian's), not docker: kind's docker provider
# always asks for `--privileged`, which Debian's dockerd turns into every
# capability it knows, and these machines' bounding set lacks CAP_SYS_RESOURCE,
# so runc refuses (`unable to apply caps: operation not permitted`). podman's
# `--privileged` grants the capabilities of the current bounding set instead.
# See images/kind-node/README.md for what was tried and why.
source "$(dirname "${BASH_SOURCE[0]}")/../testbed/lib.sh"

KIND_VERSION=v0.30.0
CRICTL_VERSION=v1.34.0
KIND_TOOLS=$RELEVO_CACHE/kind-tools
KIND=$KIND_TOOLS/kind
KIND_CLUSTER=relevo
KIND_CONFIG=$REPO_ROOT/kind-config.yaml
KIND_STATE=$RELEVO_CACHE/kind
KIND_KUBECONFIG=$KIND_STATE/kubeconfig
KIND_NODE_IMAGE=relevo/kind-node:${K8S_VERSION}-1
KIND_COMPONENTS_IMAGE=relevo/kube-components:${K8S_VERSION}-1
# The nodes' own network (a podman bridge), apart from the host-mode bed's
# 10.244.0.0/16 pods, 10.96.0.0/16 services and relevo0 bridge, and from the
# kind cluster's pods (10.245.0.0/16) and services (10.97.0.0/16).
KIND_NETWORK=relevo-kind
KIND_NETWORK_SUBNET=10.246.0.0/24
KIND_POD_CIDR=10.245.0.0/16
KIND_SERVICE_CIDR=10.97.0.0/16
KIND_DNS_IP=10.97.0.10
KIND_NODES=("$KIND_CLUSTER-control-plane" "$KIND_CLUSTER-worker" "$KIND_CLUSTER-worker2")

# kind reads these: the provider, and the podman network to put nodes on.
export KIND_EXPERIMENTAL_PROVIDER=podman
export KIND_EXPERIMENTAL_PODMAN_NETWORK=$KIND_NETWORK
# podman's own settings for the node containers, kept out of /etc/containers.
export CONTAINERS_CONF=$KIND_STATE/containers.conf

kk() { "$BIN/kubectl" --kubeconfig "$KIND_KUBECONFIG" "$@"; }

# kind_nodes_running: true when every node container of the cluster runs.
kind_nodes_running() {
  local node state
  for node in "${KIND_NODES[@]}"; do
    state=$(podman container inspect -f '{{.State.Status}}' "$node" 2>/dev/null) || return 1
    [[ $state == running ]] || return 1
  done
}

# kind_bridge: the host-side bridge of the nodes' podman network.
kind_bridge() { podman network inspect -f '{{.NetworkInterface}}' "$KIND_NETWORK"; }

# kind_host_routes: routes from this machine into the cluster, so the e2e
# suite reaches Service and pod addresses as it does on the host-mode bed:
# each node's pod CIDR via that node, the service range via the control plane
# (whose kube-proxy DNATs, and masquerades what comes from outside the pod
# range, so replies return through it). Re-run after a node changes address.
kind_host_routes() {
  local nodes name cidr address
  nodes=$(kk get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.spec.podCIDR} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}')
  while read -r name cidr address; do
    [[ -n $name && -n $cidr && -n $address ]] || continue
    ip route replace "$cidr" via "$address"
    if [[ $name == "${KIND_NODES[0]}" ]]; then
      ip route replace "$KIND_SERVICE_CIDR" via "$address"
    fi
  done <<<"$nodes"
}

# kind_forward_rule ACTION: bridged traffic between the nodes carries pod
# addresses, which the FORWARD policy docker sets (DROP) would drop; accept
# what stays on the nodes' bridge. ACTION is -I (add once) or -D (remove).
kind_forward_rule() {
  local bridge rule
  bridge=$(kind_bridge 2>/dev/null) || return 0
  rule=(FORWARD -i "$bridge" -o "$bridge" -m comment --comment relevo-kind -j ACCEPT)
  case $1 in
    -I) iptables -C "${rule[@]}" 2>/dev/null || iptables -I "${rule[@]}" ;;
    -D) while iptables -C "${rule[@]}" 2>/dev/null; do iptables -D "${rule[@]}"; done ;;
  esac
}
