#!/usr/bin/env bash
# `BENCH_ONLY=scale make bench`: the operator's memory and API load with many
# PgClusters. Prints figures, asserts nothing. Against the integration apiserver
# (etcd + kube-apiserver, no node, so no pod ever runs), under its lock:
#   - installs the CRDs, runs the operator binary as a host process against it;
#   - creates 1, then 10, then 50 PgClusters (cumulative), and for each count
#     measures over BENCH_WINDOW seconds (default 60), after BENCH_SETTLE
#     seconds (default 20): the operator's RSS and its API requests per minute
#     (relevo_api_requests_total, counted by the operator's own client, by verb),
#     first "idle" (every cluster waiting for pods that never come), then with
#     one more cluster failing (its ConfigMap pre-created immutable, so every
#     apply of it is refused by the apiserver).
# BENCH_COUNTS overrides "1 10 50"; BENCH_PROFILE=debug uses a debug build;
# BENCH_BINARY=PATH runs that operator binary instead of building one (to
# compare two builds on the same apiserver).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
if [[ -z ${RELEVO_APISERVER_LOCKED:-} ]]; then
  RELEVO_APISERVER_LOCKED=1 exec flock /tmp/relevo-apiserver.lock "$0" "$@"
fi

apiserver=$here/testbed/apiserver.sh
counts=${BENCH_COUNTS:-1 10 50}
window=${BENCH_WINDOW:-60}
settle=${BENCH_SETTLE:-20}
profile=${BENCH_PROFILE:-release}
ns=relevo-bench-scale
port=18089
work=$(mktemp -d /tmp/relevo-bench-scale.XXXXXX)
operator_pid=

say() { printf '[bench-scale %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

cleanup() {
  if [[ -n $operator_pid ]]; then kill "$operator_pid" 2>/dev/null || true; wait "$operator_pid" 2>/dev/null || true; fi
  "$apiserver" stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

binary=${BENCH_BINARY:-}
if [[ -z $binary ]]; then
  say "building the operator ($profile)"
  build_flags=(--locked -p relevo --bin relevo)
  [[ $profile == release ]] && build_flags+=(--release)
  (cd "$root" && cargo build "${build_flags[@]}" >&2)
  binary=${CARGO_TARGET_DIR:-$root/target}/$profile/relevo
fi
[[ -x $binary ]] || { say "no operator binary at $binary"; exit 1; }
say "operator: $binary"

"$apiserver" start >&2
export KUBECONFIG
KUBECONFIG=$("$apiserver" kubeconfig)
kubectl=/var/cache/relevo/bin/kubectl
k() { "$kubectl" "$@"; }

k apply --server-side --field-manager relevo-bench -k "$root/crds/" >/dev/null
for crd in pgclusters switchovers backups backupschedules; do
  k wait --for=condition=Established "crd/$crd.relevo.dev" --timeout=60s >/dev/null
done
k create namespace "$ns" >/dev/null

say "starting the operator"
RELEVO_LOG_FORMAT=text RELEVO_LOG=warn "$binary" run --http-addr "127.0.0.1:$port" \
  --watch-namespace "$ns" >"$work/operator.log" 2>&1 &
operator_pid=$!
for _ in $(seq 1 60); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { say "operator not ready; log:"; tail -20 "$work/operator.log" >&2; exit 1; }

# requests: the sum of relevo_api_requests_total over every verb.
requests() {
  curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^relevo_api_requests_total/ {sum += $2} END {print sum + 0}'
}
# by_verb: "verb=count ..." of relevo_api_requests_total.
by_verb() {
  curl -fsS "http://127.0.0.1:$port/metrics" |
    sed -n 's/^relevo_api_requests_total{verb="\([a-z]*\)"} \([0-9]*\)$/\1=\2/p' | sort | tr '\n' ' '
}
rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$operator_pid/status"; }

# measure LABEL: waits BENCH_SETTLE, then counts requests over BENCH_WINDOW.
measure() {
  local label=$1 before after verbs_before verbs_after
  sleep "$settle"
  before=$(requests); verbs_before=$(by_verb)
  sleep "$window"
  after=$(requests); verbs_after=$(by_verb)
  printf '%-34s RSS %6s MiB, API requests %7.1f/min\n' "$label:" "$(rss_mib)" \
    "$(echo "($after - $before) * 60 / $window" | bc -l)"
  say "  by verb before: $verbs_before"
  say "  by verb after:  $verbs_after"
}

cluster() {
  cat <<EOF
apiVersion: relevo.dev/v1alpha1
kind: PgCluster
metadata: {name: $1, namespace: $ns}
spec:
  instances: 2
  storage: {size: 1Gi}
  failover: {enabled: true, delay: 5s}
  redis: {managed: {}}
EOF
}

printf 'operator RSS at start (no cluster): %s MiB\n' "$(rss_mib)"
created=0
for count in $counts; do
  while ((created < count)); do
    created=$((created + 1))
    cluster "scale-$created"
    echo ---
  done >"$work/clusters.yaml"
  [[ -s $work/clusters.yaml ]] && k apply -f "$work/clusters.yaml" >/dev/null
  measure "$count clusters, idle"

  # One more cluster whose apply the apiserver refuses on every reconcile: its
  # ConfigMap exists, immutable, with other data.
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: failing-config, namespace: %s}\nimmutable: true\ndata: {taken: "yes"}\n' "$ns" |
    k apply -f - >/dev/null
  cluster failing | k apply -f - >/dev/null
  measure "$count clusters + 1 failing"
  k -n "$ns" get pgclusters.relevo.dev failing -o jsonpath='{.status.conditions[?(@.type=="Degraded")].reason}' |
    xargs -r printf '  (the failing cluster was Degraded: %s)\n'
  k -n "$ns" delete pgclusters.relevo.dev failing --wait=false >/dev/null
  k -n "$ns" delete configmap failing-config >/dev/null
done
grep -c 'reconcile failed' "$work/operator.log" | xargs printf 'operator log: %s "reconcile failed" warnings\n'
