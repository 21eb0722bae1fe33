#!/usr/bin/env bash
# The node faults story (kind, three nodes): a pod on every node, then each
# fault helper once on a worker: killed and restarted, partitioned and healed,
# frozen and thawed, drained and uncordoned. After each, the node is Ready and
# every pod is Running and Ready again; while partitioned, the control plane
# sees the node lost while its pod keeps running.
source "$(dirname "$0")/../lib.sh"
if [[ $RELEVO_CLUSTER != kind ]]; then
  say "faults: needs the kind cluster (RELEVO_CLUSTER=kind); skipped"
  summary faults; exit
fi
source "$E2E_DIR/faults.sh"
ns=relevo-e2e-faults
k delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
k create namespace "$ns" >/dev/null
trap 'node_recover_all' EXIT

victim=${KIND_NODES[1]}
say "one pod per node (required spread), each answering redis-cli ping"
k -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: spread}
spec:
  replicas: 3
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      terminationGracePeriodSeconds: 2
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - topologyKey: kubernetes.io/hostname
            labelSelector: {matchLabels: {app: spread}}
      containers:
      - name: redis
        image: $REDIS_IMAGE
        readinessProbe:
          exec: {command: [redis-cli, ping]}
          periodSeconds: 2
YAML

# pods_ready WANT: every pod of the Deployment Running and Ready, WANT of them.
pods_ready() {
  local rows
  rows=$(k -n "$ns" get pods -l app=spread -o jsonpath='{range .items[*]}{.status.phase}/{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}')
  [[ $(grep -c '^Running/True$' <<<"$rows") == "$1" && $(grep -c . <<<"$rows") == "$1" ]]
}
# pod_on NODE: the Deployment's pod on NODE, if any.
pod_on() { k -n "$ns" get pods -l app=spread --field-selector "spec.nodeName=$1" -o jsonpath='{.items[*].metadata.name}'; }
# after FAULT: the victim Ready and every pod back, within bounds.
after() {
  if node_ready "$victim" && wait_for "3 pods Running and Ready" 180 pods_ready 3; then
    pass "$1: $victim Ready, 3 pods Running and Ready ($(k -n "$ns" get pods -l app=spread -o jsonpath='{range .items[*]}{.metadata.name}@{.spec.nodeName} {end}'))"
  else
    fail "$1: $victim or its pods did not come back"
    k get nodes >&2; k -n "$ns" get pods -o wide >&2
  fi
}

if wait_for "3 pods Running and Ready" 180 pods_ready 3; then
  nodes=$(k -n "$ns" get pods -l app=spread -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | sort -u | grep -c .)
  [[ $nodes == 3 ]] && pass "the 3 pods run on 3 nodes" || fail "the 3 pods run on $nodes nodes"
else
  fail "the Deployment never had 3 Ready pods"; k -n "$ns" get pods -o wide >&2
  summary faults; exit 1
fi

# --- killed -------------------------------------------------------------------------
before=$(pod_on "$victim")
node_kill "$victim"
node_not_ready "$victim" 90 && pass "killed: the control plane sees $victim not Ready" \
  || fail "killed: $victim still Ready after 90s"
node_restart "$victim"
after "killed and restarted"
[[ $(pod_on "$victim") == "$before" ]] && pass "killed: $before restarted in place on $victim" \
  || fail "killed: the pod on $victim is '$(pod_on "$victim")', was '$before'"

# --- partitioned ----------------------------------------------------------------------
pod=$(pod_on "$victim")
node_partition "$victim"
node_not_ready "$victim" 90 && pass "partitioned: the control plane sees $victim not Ready" \
  || fail "partitioned: $victim still Ready after 90s"
running=$(podman exec "$victim" crictl ps --name redis --state running -q)
[[ -n $running ]] && pass "partitioned: $pod keeps running on $victim" || fail "partitioned: no redis container running on $victim"
api=$(k get node "${KIND_NODES[0]}" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')
if podman exec "$victim" timeout 3 bash -c "echo > /dev/tcp/$api/6443" 2>/dev/null; then
  fail "partitioned: $victim still reaches the API server"
else
  pass "partitioned: $victim cannot reach the API server"
fi
node_heal "$victim"
after "partitioned and healed"

# --- frozen -----------------------------------------------------------------------------
node_freeze "$victim"
node_not_ready "$victim" 90 && pass "frozen: the control plane sees $victim not Ready" \
  || fail "frozen: $victim still Ready after 90s"
node_thaw "$victim"
after "frozen and thawed"

# --- drained -------------------------------------------------------------------------------
# With the spread required, the drained node's pod waits Pending until uncordon.
node_drain "$victim"
[[ -z $(pod_on "$victim") ]] && pass "drained: no pod of ours left on $victim" || fail "drained: $(pod_on "$victim") still on $victim"
node_uncordon "$victim"
after "drained and uncordoned"
unschedulable=$(k get node "$victim" -o jsonpath='{.spec.unschedulable}')
[[ -z $unschedulable ]] && pass "uncordoned: $victim schedulable" || fail "uncordoned: $victim unschedulable=$unschedulable"

k delete namespace "$ns" --wait=false >/dev/null
summary faults
