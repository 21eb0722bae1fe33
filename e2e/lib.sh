# Helpers of the e2e suite, sourced by its scripts. The suite runs against
# whatever cluster KUBECONFIG names (the test bed by default, or kind).
set -euo pipefail
# The cluster the suite runs on: kind's three nodes unless RELEVO_CLUSTER=local.
export RELEVO_CLUSTER=${RELEVO_CLUSTER:-kind}
E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$E2E_DIR/.." && pwd)
source "$REPO_ROOT/images/tags.env"
export KUBECONFIG=${KUBECONFIG:-$("$E2E_DIR/cluster.sh" kubeconfig)}
KUBECTL=${KUBECTL:-$("$E2E_DIR/cluster.sh" kubectl-path)}
PASSED=0
FAILED=0

k() { "$KUBECTL" "$@"; }
say() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
pass() { PASSED=$((PASSED + 1)); say "PASS: $*"; }
# Every failed check is also appended to $RELEVO_E2E_FAILURES (when set), so that
# `make test` can list them again at the very end of its output.
fail() {
  FAILED=$((FAILED + 1)); say "FAIL: $*"
  if [[ -n ${RELEVO_E2E_FAILURES:-} ]]; then
    printf '%s %s: %s\n' "$(date +%H:%M:%S)" "$(basename "$0" .sh)" "$*" >>"$RELEVO_E2E_FAILURES"
  fi
}

source "$E2E_DIR/wait.sh"

# operator_leader: the operator pod that holds the relevo-operator Lease. Two
# replicas run; the other stands by (its /metrics and log say little).
operator_leader() {
  k -n relevo-system get leases.coordination.k8s.io relevo-operator -o jsonpath='{.spec.holderIdentity}' 2>/dev/null
}
# operator_logs ARGS...: `kubectl logs` of the leading operator.
operator_logs() { k -n relevo-system logs "$(operator_leader)" "$@"; }

# container_signal NS POD CONTAINER SIGNAL: signals the container's main process from
# its node: a container's PID 1 ignores SIGSTOP sent from inside its own PID namespace.
container_signal() {
  local node cid on_node=()
  node=$(k -n "$1" get pod "$2" -o jsonpath='{.spec.nodeName}')
  cid=$(k -n "$1" get pod "$2" -o jsonpath="{.status.containerStatuses[?(@.name==\"$3\")].containerID}")
  [[ $RELEVO_CLUSTER == kind ]] && on_node=(podman exec "$node")
  "${on_node[@]}" sh -c "kill -$4 \$(crictl inspect --output go-template --template '{{.info.pid}}' ${cid#*://})"
}

# summary: the closing line test runners print; fails when anything failed.
summary() {
  echo "${1:-e2e}: $PASSED passed, $FAILED failed"
  ((FAILED == 0))
}

# cluster_ca NAMESPACE CLUSTER: path of a file with the CA a PgCluster publishes
# in its ConfigMap <cluster>-ca, as an application would mount it.
cluster_ca() {
  local file=${TMPDIR:-/tmp}/relevo-e2e-ca-$1-$2.crt
  k -n "$1" get configmap "$2-ca" -o jsonpath='{.data.ca\.crt}' >"$file"
  echo "$file"
}

# psql_to NAMESPACE SERVICE SQL: runs SQL as the app user through a Service of
# a PgCluster, from this machine (the node reaches ClusterIPs via kube-proxy),
# the way applications must: TLS with sslmode=verify-full against the published
# CA, for the Service's DNS name (dialled at its ClusterIP by hostaddr).
# PSQL_ROLE=superuser runs it as the superuser instead.
psql_to() {
  local ns=$1 service=$2 sql=$3 cluster=${2%-*}
  local secret=$cluster-${PSQL_ROLE:-app} ip user password ca
  ip=$(k -n "$ns" get service "$service" -o jsonpath='{.spec.clusterIP}')
  user=$(k -n "$ns" get secret "$secret" -o jsonpath='{.data.username}' | base64 -d)
  password=$(k -n "$ns" get secret "$secret" -o jsonpath='{.data.password}' | base64 -d)
  ca=$(cluster_ca "$ns" "$cluster")
  PGPASSWORD=$password PGCONNECT_TIMEOUT=3 psql \
    "host=$service.$ns.svc hostaddr=$ip port=5432 user=$user dbname=${PSQL_DB:-app} sslmode=verify-full sslrootcert=$ca" \
    -XAtq -v ON_ERROR_STOP=1 -c "$sql"
}
