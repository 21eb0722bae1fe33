#!/usr/bin/env bash
# `make bench`: measures and prints figures, asserts nothing. Brings the
# cluster up if needed and installs relevo, then measures:
#   - a warm `cluster-up` (every component already running);
#   - PgCluster create -> Ready (primary + 1 standby), repeated, median and max;
#   - the operator's resident memory with those clusters.
# Traffic stays on this machine: the cluster's own pod and service ranges.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/cluster.sh" up >/dev/null 2>&1
source "$here/lib.sh"
runs=${BENCH_RUNS:-5}
ns=relevo-bench

t0=$(date +%s.%N); "$E2E_DIR/cluster.sh" up >/dev/null 2>&1; t1=$(date +%s.%N)
printf 'cluster-up on a running cluster: %.1fs\n' "$(echo "$t1 - $t0" | bc)"

"$E2E_DIR/install.sh" >/dev/null 2>&1
k delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
k create namespace "$ns" >/dev/null
trap 'k delete namespace "$ns" --wait=false >/dev/null 2>&1' EXIT

ready=()
for i in $(seq 1 "$runs"); do
  name=bench-$i
  t0=$(date +%s.%N)
  sed "s/name: demo/name: $name/" "$REPO_ROOT/manifests/samples/pgcluster.yaml" | k -n "$ns" apply -f - >/dev/null
  k -n "$ns" wait --for=condition=Ready "pgcluster/$name" --timeout=300s >/dev/null
  t1=$(date +%s.%N)
  ready+=("$(echo "$t1 - $t0" | bc)")
  printf 'run %d: PgCluster %s Ready (primary + standby streaming) in %.1fs\n' "$i" "$name" "${ready[-1]}"
done
sorted=$(printf '%s\n' "${ready[@]}" | sort -n)
median=$(sed -n "$(((runs + 1) / 2))p" <<<"$sorted")
printf 'PgCluster create -> Ready over %d runs: median %.1fs, max %.1fs\n' "$runs" "$median" "$(tail -1 <<<"$sorted")"

pid=$(pgrep -f '/usr/local/bin/relevo run' | head -1)
rss_kib=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
printf 'operator RSS with %d clusters: %.1f MiB\n' "$runs" "$(echo "$rss_kib / 1024" | bc -l)"
