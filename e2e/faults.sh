# Node faults on the kind cluster, for e2e stories. Sourced after e2e/lib.sh:
#   node_kill NODE       SIGKILL the node container: kubelet, containerd and
#                        every pod on it die at once (as a power cut would)
#   node_restart NODE    start it again; returns once its kubelet is back (a
#                        killed node has recovered when it runs again)
#   node_partition NODE  cut the node off from the other nodes, the API server
#                        and this machine; its pods keep running
#   node_heal NODE       undo node_partition; returns once the node is Ready
#   node_freeze NODE     freeze every process of the node (podman pause)
#   node_thaw NODE       unfreeze it; returns once the node is Ready
#   node_drain NODE      cordon and evict its pods (kubectl drain)
#   node_uncordon NODE   make it schedulable again
# Each is bounded in time and fails with what it saw; the second of each pair
# leaves the node working. Nodes are podman containers (see e2e/kind/lib.sh).
source "$E2E_DIR/kind/lib.sh"

FAULT_READY_TIMEOUT=${FAULT_READY_TIMEOUT:-180}

# node_ready NODE: waits until NODE is Ready and its host routes are current.
node_ready() {
  wait_for "node $1 Ready" "$FAULT_READY_TIMEOUT" k wait --for=condition=Ready "node/$1" --timeout=5s || return 1
  # A restarted node may come back with another address.
  kind_host_routes
}

# node_back NODE SINCE: NODE's kubelet has renewed its node Lease after SINCE
# (epoch seconds), and the node is Ready. The Ready condition alone may be the
# stale one from before the fault: the control plane marks a node NotReady only
# after its grace period, so a fault shorter than that never shows there.
node_back() {
  local renewed
  wait_for "node $1's kubelet renewing its Lease after the fault" "$FAULT_READY_TIMEOUT" bash -c \
    "t=\$('$KUBECTL' -n kube-node-lease get lease '$1' -o jsonpath='{.spec.renewTime}') && echo \"renewTime \$t\" && (( \$(date -d \"\$t\" +%s) >= $2 ))" || return 1
  renewed=$(k -n kube-node-lease get lease "$1" -o jsonpath='{.spec.renewTime}')
  say "fault: node $1's kubelet is back (Lease renewed at $renewed, $(( $(date -d "$renewed" +%s) - $2 )) s after the start)"
  node_ready "$1"
}

# node_not_ready NODE TIMEOUT: waits until the control plane sees NODE not Ready.
node_not_ready() {
  wait_for "node $1 not Ready" "$2" bash -c \
    "[[ \$('$KUBECTL' get node '$1' -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}') != True ]]"
}

node_state() { podman container inspect -f '{{.State.Status}}' "$1"; }

node_kill() {
  say "fault: killing node $1"
  podman kill --signal KILL "$1" >/dev/null
  wait_for "node container $1 stopped" 30 bash -c "[[ \$(podman container inspect -f '{{.State.Status}}' '$1') != running ]]"
}

node_restart() {
  local since
  say "fault: restarting node $1"
  since=$(date +%s)
  podman start "$1" >/dev/null
  node_back "$1" "$since"
}

# The partition drops everything on the node's only link, eth0, in both
# directions and when forwarded to or from its pods, ahead of any rule
# kube-proxy keeps; the loopback and the pod bridge stay up.
partition_rules=(
  "INPUT -i eth0"
  "OUTPUT -o eth0"
  "FORWARD -i eth0"
  "FORWARD -o eth0"
)
node_partition() {
  local rule script=
  say "fault: partitioning node $1"
  # One exec for every rule: a podman exec takes ~0.5 s here, and a node whose input is cut
  # while its output still flows for seconds is another fault (and delays the real cut).
  for rule in "${partition_rules[@]}"; do
    script+="iptables -I $rule -m comment --comment relevo-partition -j DROP && "
  done
  podman exec "$1" sh -c "${script}true"
}

node_heal() {
  local rule n
  say "fault: healing node $1"
  for rule in "${partition_rules[@]}"; do
    for n in 1 2 3 4 5; do
      # shellcheck disable=SC2086
      podman exec "$1" iptables -C $rule -m comment --comment relevo-partition -j DROP 2>/dev/null || break
      # shellcheck disable=SC2086
      podman exec "$1" iptables -D $rule -m comment --comment relevo-partition -j DROP
    done
  done
  node_ready "$1"
}

node_freeze() {
  say "fault: freezing node $1"
  podman pause "$1" >/dev/null
  [[ $(node_state "$1") == paused ]]
}

node_thaw() {
  say "fault: thawing node $1"
  podman unpause "$1" >/dev/null
  node_ready "$1"
}

node_drain() {
  say "fault: draining node $1"
  k drain "$1" --ignore-daemonsets --delete-emptydir-data --timeout=120s >/dev/null
}

node_uncordon() {
  say "fault: uncordoning node $1"
  k uncordon "$1" >/dev/null
  node_ready "$1"
}

# A NoSchedule taint that steers a new pod (an operator replica) onto the one
# node without it. Not a cordon: relevo treats a cordoned primary's node as a
# drain and switches over.
E2E_PLACING_TAINT=relevo-e2e/placing=operator:NoSchedule

# node_recover_all: best effort after a failed story, so the next one finds
# every node up, healed, thawed and schedulable.
node_recover_all() {
  local node
  for node in "${KIND_NODES[@]}"; do
    case $(node_state "$node" 2>/dev/null) in
      paused) podman unpause "$node" >/dev/null 2>&1 ;;
      exited | stopped) podman start "$node" >/dev/null 2>&1 ;;
    esac
  done
  for node in "${KIND_NODES[@]}"; do
    node_heal "$node" >/dev/null 2>&1 || true
    k uncordon "$node" >/dev/null 2>&1 || true
    k taint nodes "$node" "$E2E_PLACING_TAINT-" >/dev/null 2>&1 || true
  done
}
