#!/usr/bin/env bash
# `make bench`: measures and prints figures, asserts nothing. Brings the
# cluster up if needed and installs relevo, then measures:
#   - a warm `cluster-up` (every component already running);
#   - PgCluster create -> Ready (primary + 1 standby), repeated, median and max;
#   - the operator's resident memory with those clusters;
#   - planned switchovers under write load (BENCH_SWITCHOVERS, default 5) and
#     unplanned failovers after losing the primary's node (BENCH_FAILOVERS,
#     default 3): write gap, time to writable, time to Completed, time until
#     the old primary streams again; median and max of each;
#   - the operator's overhead per backup Job (BENCH_BACKUPS, default 5).
# Traffic stays on this machine: the cluster's own pod and service ranges.
#   - planned switchovers with and without the pooler (BENCH_POOLER_SWITCHOVERS).
# BENCH_ONLY=switchover, BENCH_ONLY=backup or BENCH_ONLY=pooler measures only those;
# BENCH_NO_INSTALL=1 keeps the relevo already installed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/cluster.sh" up >&2
source "$here/lib.sh"
runs=${BENCH_RUNS:-5}
ns=relevo-bench

# stats LABEL UNIT VALUE...: prints the median and the maximum.
stats() {
  local label=$1 unit=$2; shift 2
  local sorted
  sorted=$(printf '%s\n' "$@" | sort -n)
  printf '%s over %d runs: median %.2f%s, max %.2f%s\n' "$label" "$#" \
    "$(sed -n "$((($# + 1) / 2))p" <<<"$sorted")" "$unit" "$(tail -1 <<<"$sorted")" "$unit"
}

[[ -n ${BENCH_NO_INSTALL:-} ]] || "$E2E_DIR/install.sh" >/dev/null 2>&1

only=${BENCH_ONLY:-all}
if [[ $only == all ]]; then
  t0=$(date +%s.%N); "$E2E_DIR/cluster.sh" up >/dev/null 2>&1; t1=$(date +%s.%N)
  printf 'cluster-up on a running cluster: %.1fs\n' "$(echo "$t1 - $t0" | bc)"

  k delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
  k create namespace "$ns" >/dev/null
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
  stats 'PgCluster create -> Ready' s "${ready[@]}"

  pid=$(pgrep -f '/usr/local/bin/relevo run' | head -1)
  rss_kib=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  printf 'operator RSS with %d clusters: %.1f MiB\n' "$runs" "$(echo "$rss_kib / 1024" | bc -l)"
  k delete namespace "$ns" --wait=false >/dev/null
fi

if [[ $only == all || $only == backup ]]; then
  # The operator's overhead per backup Job: from the Backup's creation to its Job's
  # completion, minus pgBackRest's own start -> stop, over BENCH_BACKUPS incremental backups.
  bns=relevo-bench-backup
  k delete namespace "$bns" --ignore-not-found --wait=true >/dev/null
  k create namespace "$bns" >/dev/null
  trap 'k delete namespace "$bns" --wait=false >/dev/null 2>&1' EXIT
  k -n "$bns" apply -f "$REPO_ROOT/manifests/samples/pgcluster.yaml" >/dev/null
  k -n "$bns" wait --for=condition=Ready pgcluster/demo --timeout=300s >/dev/null
  k -n "$bns" wait --for=condition=Ready pod/demo-repo-0 --timeout=300s >/dev/null
  relevo=$("$REPO_ROOT/images/build.sh" --print-binary)
  epoch() { date -d "$1" +%s; }
  overhead=(); total=(); own=()
  for i in $(seq 1 "${BENCH_BACKUPS:-5}"); do
    type=incr; ((i == 1)) && type=full
    name=$("$relevo" backup demo -n "$bns" --type "$type" | sed -n 's|^backup.relevo.dev/\([^ ]*\) created.*|\1|p')
    wait_for "$name Completed" 300 bash -c "[[ \$(source '$E2E_DIR/lib.sh'; k -n $bns get backup $name -o jsonpath='{.status.phase}') == Completed ]]"
    read -r created job start stop <<<"$(k -n "$bns" get backup "$name" \
      -o jsonpath='{.metadata.creationTimestamp} {.status.job} {.status.startTime} {.status.stopTime}')"
    done_at=$(k -n "$bns" get job "$job" -o jsonpath='{.status.completionTime}')
    t=$(($(epoch "$done_at") - $(epoch "$created"))); p=$(($(epoch "$stop") - $(epoch "$start")))
    total+=("$t"); own+=("$p"); overhead+=("$((t - p))")
    printf 'backup %d (%s): Backup created -> Job complete %ds, pgBackRest start -> stop %ds, overhead %ds\n' "$i" "$type" "$t" "$p" "$((t - p))"
  done
  stats 'backup: Backup created -> Job complete' s "${total[@]}"
  stats "backup: pgBackRest's own duration" s "${own[@]}"
  stats 'backup: operator overhead per Job (1 s resolution)' s "${overhead[@]}"
  k delete namespace "$bns" --wait=false >/dev/null
  trap - EXIT
fi
if [[ $only == all || $only == pooler ]]; then
  # Planned switchovers with and without the pooler (BENCH_POOLER_SWITCHOVERS,
  # default 5, each way): the same loop writer (one psql INSERT per connection)
  # through demo-rw and through demo-pooler, refused inserts per switchover and
  # the longest gap; then pgbench (4 persistent connections, 60 tx/s) through
  # the pooler: failed transactions, dropped connections, latency against a
  # baseline without switchovers, and the longest stall.
  (
    source "$E2E_DIR/pooler-lib.sh"
    pl_init relevo-bench-pooler >/dev/null || exit 1
    n=${BENCH_POOLER_SWITCHOVERS:-5}
    for via in rw pooler; do
      host=$pl_rw_ip; [[ $via == pooler ]] && host=$pl_pooler_ip
      pl_loop_writer "$host" "loop-$via"
      pl_switchovers "$n" "bench-$via" >/dev/null 2>&1 || echo "pooler bench: switchovers via $via stopped after $PL_COMPLETED"
      pl_loop_stop "loop-$via"
      printf 'loop writer via demo-%s, %d switchovers: %d refused inserts (%.1f per switchover), longest gap %ss\n' \
        "$via" "$PL_COMPLETED" "$PL_REFUSED" "$(echo "$PL_REFUSED / ($PL_COMPLETED + 0.0001)" | bc -l)" "$PL_GAP"
    done
    pl_pgbench "$pl_pooler_ip" 15 baseline; pl_wait_pgbench baseline || true; pl_figures baseline
    base_p50=$PL_P50 base_p99=$PL_P99 base_max=$PL_MAX base_tx=$PL_TX base_tps=$PL_TPS
    pl_pgbench "$pl_pooler_ip" $((20 + 25 * n)) switching
    pl_switchovers "$n" bench-pgbench >/dev/null 2>&1 || true
    pl_wait_pgbench switching || true
    printf 'pgbench via demo-pooler, no switchover: %s tx at %s tx/s, latency p50 %sms p99 %sms max %sms\n' \
      "$base_tx" "$base_tps" "$base_p50" "$base_p99" "$base_max"
    pl_figures switching
    printf 'pgbench via demo-pooler, %d switchovers: %s tx at %s tx/s, failed %s, clients aborted %s, latency p50 %sms p99 %sms max %sms, longest stall %ss\n' \
      "$PL_COMPLETED" "$PL_TX" "$PL_TPS" "$PL_FAILED" "$PL_ABORTED" "$PL_P50" "$PL_P99" "$PL_MAX" "$PL_STALL"
    printf 'pooler: added latency during switchovers p50 %+.1fms p99 %+.1fms max %+.1fms\n' \
      "$(echo "$PL_P50 - $base_p50" | bc)" "$(echo "$PL_P99 - $base_p99" | bc)" "$(echo "$PL_MAX - $base_max" | bc)"
  )
fi
[[ $only == all || $only == switchover ]] || exit 0

source "$E2E_DIR/switchover-lib.sh"
so_init relevo-bench-switchover
gap=(); writable=(); completed=(); streaming=()
record() {
  printf '%s: write gap %ss, writable after %ss, Completed in %ss, old primary streaming after %ss\n' \
    "$1" "$FIG_GAP" "$FIG_WRITABLE" "$FIG_COMPLETED" "${FIG_STREAMING:-n/a}"
  gap+=("$FIG_GAP"); writable+=("$FIG_WRITABLE"); completed+=("$FIG_COMPLETED")
  [[ -z ${FIG_STREAMING:-} ]] || streaming+=("$FIG_STREAMING")
}
for i in $(seq 1 "${BENCH_SWITCHOVERS:-5}"); do
  target=demo-2; [[ $(so_primary) == demo-2 ]] && target=demo-1
  run_scenario "planned #$i" planned "bench-planned-$i" "$target"
  record "planned #$i -> $target"
  # The PgCluster status follows the switchover; the next run starts from it.
  wait_for "currentPrimary $target" 30 bash -c "[[ \$(source '$E2E_DIR/lib.sh'; so_ns=$so_ns; \
    k -n $so_ns get pgcluster demo -o jsonpath='{.status.currentPrimary}') == $target ]]" || true
done
stats 'planned: write gap' s "${gap[@]}"
stats 'planned: writable after the request' s "${writable[@]}"
stats 'planned: Completed' s "${completed[@]}"
stats 'planned: old primary streaming again' s "${streaming[@]}"

gap=(); writable=(); completed=(); streaming=()
delay=$(k -n "$so_ns" get pgcluster demo -o jsonpath='{.spec.failover.delay}')
for i in $(seq 1 "${BENCH_FAILOVERS:-3}"); do
  run_scenario "failover #$i" node_loss
  record "failover #$i ($switchover)"
done
stats "failover (delay $delay): write gap" s "${gap[@]}"
stats "failover (delay $delay): writable after losing the primary" s "${writable[@]}"
stats 'failover: Completed (lost instance rebuilt)' s "${completed[@]}"
echo "checks during the benchmark: $PASSED passed, $FAILED failed"
