#!/usr/bin/env bash
# Verifies that `down` left nothing of the kind cluster on this machine: node
# containers or volumes, the podman network and its bridge, veths on it, DNS
# server, routes into the cluster, the FORWARD rule, cgroups or state. Prints
# each leftover and fails if there is any.
source "$(dirname "$0")/lib.sh"
left=()

containers=$(podman ps -a -q --filter "label=io.x-k8s.kind.cluster=$KIND_CLUSTER" 2>/dev/null || true)
[[ -z $containers ]] || left+=("node containers: $containers")
for node in "${KIND_NODES[@]}"; do
  podman container exists "$node" 2>/dev/null && left+=("container $node")
done
volumes=$(podman volume ls -q --filter dangling=true 2>/dev/null || true)
[[ -z $volumes ]] || left+=("dangling podman volumes: $volumes")
podman network exists "$KIND_NETWORK" 2>/dev/null && left+=("podman network $KIND_NETWORK")
[[ -e /etc/cni/net.d/$KIND_NETWORK.conflist ]] && left+=("CNI configuration of $KIND_NETWORK")
# The nodes' bridge holds the network's gateway address; its veths go with it.
[[ -z $(ip -4 -o addr show to "$KIND_NETWORK_SUBNET") ]] || left+=("an interface in $KIND_NETWORK_SUBNET (the nodes' bridge)")
processes=$(ps -eo args)
grep -E "dnsmasq .*$KIND_NETWORK" <<<"$processes" >/dev/null && left+=("dnsmasq of $KIND_NETWORK")
grep -E "^(/usr/bin/)?conmon .*($(IFS='|'; echo "${KIND_NODES[*]}"))" <<<"$processes" >/dev/null && left+=("conmon of a node")
for range in "$KIND_SERVICE_CIDR" "$KIND_POD_CIDR" "$KIND_NETWORK_SUBNET"; do
  [[ -z $(ip -4 route show to root "$range") ]] || left+=("routes into $range")
done
rules=$(iptables -S FORWARD 2>/dev/null || true)
grep -e relevo-kind <<<"$rules" >/dev/null && left+=("FORWARD rule relevo-kind")
compgen -G "/sys/fs/cgroup/*/libpod_parent/libpod-*" >/dev/null && left+=("podman container cgroups")
[[ -e $KIND_STATE ]] && left+=("state directory $KIND_STATE")

if ((${#left[@]})); then
  printf 'left behind: %s\n' "${left[@]}" >&2
  exit 1
fi
log "nothing of the kind cluster is left on the machine"
