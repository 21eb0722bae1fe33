#!/usr/bin/env bash
# Brings up the three-node kind cluster offline: the node image (built here),
# kind over podman, relevo's CoreDNS, routes from this machine into the
# cluster. Running it on a live cluster changes nothing that runs.
source "$(dirname "$0")/lib.sh"
start=$SECONDS

"$TB_DIR/deps.sh"
ensure_packages podman golang-github-containernetworking-plugin-dnsname
"$REPO_ROOT/images/kind-node/build.sh"

mkdir -p "$KIND_STATE"
# podman asks runc for RLIMIT_NOFILE/NPROC above what these machines let it
# raise to (no CAP_SYS_RESOURCE), and the node containers then fail with
# "error setting rlimits ... operation not permitted". Ask for what there is:
# the hard nofile limit here, and nproc no higher than podman's conmon runs
# with (32768).
nproc=$(ulimit -Hu); [[ $nproc == unlimited || $nproc -gt 32768 ]] && nproc=32768
nofile=$(ulimit -Hn); [[ $nofile == unlimited ]] && nofile=1048576
write_file "$CONTAINERS_CONF" <<TOML
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
TOML

if ! podman network exists "$KIND_NETWORK"; then
  log "creating podman network $KIND_NETWORK ($KIND_NETWORK_SUBNET)"
  podman network create -d bridge --subnet "$KIND_NETWORK_SUBNET" "$KIND_NETWORK" >/dev/null
fi

# The node image goes from docker to podman's store whenever docker's differs
# (podman keeps the image's ID, the digest of its configuration). podman names
# a loaded image localhost/…; kind asks for docker.io/….
want=$(docker image inspect -f '{{.Id}}' "$KIND_NODE_IMAGE")
have=$(podman image inspect -f '{{.Id}}' "docker.io/$KIND_NODE_IMAGE" 2>/dev/null || true)
if [[ sha256:$have != "$want" ]]; then
  log "copying $KIND_NODE_IMAGE from docker to podman"
  docker save "$KIND_NODE_IMAGE" | podman load -q >/dev/null
  podman tag "localhost/$KIND_NODE_IMAGE" "docker.io/$KIND_NODE_IMAGE"
  podman rmi "localhost/$KIND_NODE_IMAGE" >/dev/null
fi

# kind mounts /lib/modules read-only into every node; this kernel has all it
# needs built in and no such directory.
[[ -d /lib/modules ]] || mkdir -p /lib/modules

clusters=$("$KIND" get clusters 2>/dev/null || true)
if grep -qx "$KIND_CLUSTER" <<<"$clusters"; then
  if ! kind_nodes_running; then
    log "starting the stopped nodes of $KIND_CLUSTER"
    for node in "${KIND_NODES[@]}"; do podman start "$node" >/dev/null; done
  fi
else
  log "creating kind cluster $KIND_CLUSTER (3 nodes)"
  # kind-config.yaml plus, for the tests only, the API server's audit of the
  # operator's requests (e2e/rbac-audit.py reads it): the policy is mounted from
  # here, and kind needs an absolute path for that.
  mkdir -p "$KIND_STATE/audit"
  cp "$REPO_ROOT/e2e/kind/audit-policy.yaml" "$KIND_STATE/audit/policy.yaml"
  /usr/bin/python3 "$REPO_ROOT/e2e/kind/with-audit.py" "$KIND_CONFIG" "$KIND_STATE/audit" \
    >"$KIND_STATE/kind-config-audited.yaml"
  "$KIND" create cluster --name "$KIND_CLUSTER" --config "$KIND_STATE/kind-config-audited.yaml" \
    --kubeconfig "$KIND_KUBECONFIG" --wait 0s
fi
"$KIND" get kubeconfig --name "$KIND_CLUSTER" >"$KIND_KUBECONFIG.new"
mv "$KIND_KUBECONFIG.new" "$KIND_KUBECONFIG"

kind_forward_rule -I
wait_for "the API server" 120 kk get --raw /readyz
kind_host_routes

sed -e "s|@DNS_IP@|$KIND_DNS_IP|g" -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" -e "s|replicas: 1|replicas: 2|" \
  "$TB_DIR/addons/coredns.yaml" | kk apply -f - >/dev/null

for node in "${KIND_NODES[@]}"; do
  wait_for "node $node Ready" 180 kk wait --for=condition=Ready "node/$node" --timeout=5s
done
kind_host_routes
for ds in relevo-podnet relevo-local-provisioner kube-proxy; do
  wait_for "DaemonSet $ds on every node" 120 kk -n kube-system rollout status "daemonset/$ds" --timeout=5s
done
wait_for "CoreDNS available" 120 kk -n kube-system wait --for=condition=Available deployment/coredns --timeout=5s
log "kind cluster up in $((SECONDS - start))s; KUBECONFIG=$KIND_KUBECONFIG"
