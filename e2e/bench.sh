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
#   - the operator's overhead per backup Job (BENCH_BACKUPS, default 5);
#   - the pooler: the same writer through demo-rw and through demo-pooler across
#     planned switchovers (failed transactions, latency, longest stall).
# Traffic stays on this machine: the cluster's own pod and service ranges.
# BENCH_ONLY=switchover, BENCH_ONLY=backup or BENCH_ONLY=pooler measures only those;
# BENCH_ONLY=scale runs e2e/bench-scale.sh instead (operator memory and API load with
# 1, 10 and 50 PgClusters, against the integration apiserver; no cluster needed);
# BENCH_NO_INSTALL=1 keeps the relevo already installed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [[ ${BENCH_ONLY:-} == scale ]]; then exec "$here/bench-scale.sh"; fi
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
    k -n "$ns" wait --for=condition=Ready "pgclusters.relevo.dev/$name" --timeout=300s >/dev/null
    t1=$(date +%s.%N)
    ready+=("$(echo "$t1 - $t0" | bc)")
    printf 'run %d: PgCluster %s Ready (primary + standby streaming) in %.1fs\n' "$i" "$name" "${ready[-1]}"
  done
  stats 'PgCluster create -> Ready' s "${ready[@]}"

  # Both replicas run on this machine's kernel; each is told by its pod's name.
  leader=$(operator_leader)
  for pid in $(pgrep -f '/usr/local/bin/relevo run' || true); do
    role=standby
    tr '\0' '\n' <"/proc/$pid/environ" | grep -qxF "POD_NAME=$leader" && role=leader
    rss_kib=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
    printf 'operator RSS with %d clusters (%s replica): %.1f MiB\n' "$runs" "$role" "$(echo "$rss_kib / 1024" | bc -l)"
  done
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
  k -n "$bns" wait --for=condition=Ready pgclusters.relevo.dev/demo --timeout=300s >/dev/null
  wait_for "demo-repo-0 Ready" 300 k -n "$bns" wait --for=condition=Ready pod/demo-repo-0 --timeout=5s
  relevo=$("$REPO_ROOT/images/build.sh" --print-binary)
  epoch() { date -d "$1" +%s; }
  overhead=(); total=(); own=()
  for i in $(seq 1 "${BENCH_BACKUPS:-5}"); do
    type=incr; ((i == 1)) && type=full
    name=$("$relevo" backup demo -n "$bns" --type "$type" | sed -n 's|^backup.relevo.dev/\([^ ]*\) created.*|\1|p')
    wait_for "$name Completed" 300 bash -c "[[ \$(source '$E2E_DIR/lib.sh'; k -n $bns get backups.relevo.dev $name -o jsonpath='{.status.phase}') == Completed ]]"
    read -r created job start stop <<<"$(k -n "$bns" get backups.relevo.dev "$name" \
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
[[ $only == all || $only == switchover || $only == pooler ]] || exit 0

# On kind, failovers and partitions are real node faults on workers.
[[ $RELEVO_CLUSTER != kind ]] || source "$E2E_DIR/faults.sh"
source "$E2E_DIR/switchover-lib.sh"

# The pooler's worth: the same writer (e2e/loadgen.py: 4 clients with persistent
# connections, 60 INSERTs/s in all, a failed one reconnects for the next) through
# demo-rw, then through demo-pooler (transaction mode), each across
# BENCH_POOLER_SWITCHOVERS planned switchovers (default 5): failed transactions
# per switchover, the latency (p50, p99, max, from each transaction's scheduled
# start) and the longest a client went without an acknowledged commit.
bench_rows() { [[ $(psql_to "$so_ns" demo-rw "SELECT count(*) > 0 FROM bench_load") == t ]]; }
bench_switchover_ended() { [[ $(switchover_phase "$bench_switchover") =~ ^(Completed|Failed)$ ]]; }
bench_primary_is() { [[ $(so_primary) == "$1" ]]; }
bench_pooler() {
  so_init relevo-bench-pooler
  local switchovers=${BENCH_POOLER_SWITCHOVERS:-5} route
  k -n "$so_ns" patch pgclusters.relevo.dev demo --type merge \
    -p '{"spec":{"pooler":{"instances":2,"poolMode":"transaction"}}}' >/dev/null
  wait_for "deployment/demo-pooler available" 180 \
    k -n "$so_ns" wait --for=condition=Available deployment/demo-pooler --timeout=5s
  psql_to "$so_ns" demo-rw "CREATE TABLE bench_load (client int, seq int, at timestamptz DEFAULT now())"
  for route in demo-rw demo-pooler; do
    psql_to "$so_ns" demo-rw "TRUNCATE bench_load" >/dev/null
    so_client_env "$route" "$SO_WORK/env-$route"
    rm -f "$SO_WORK/stop-load"
    (source "$SO_WORK/env-$route" && exec /usr/bin/python3 "$E2E_DIR/loadgen.py" --seconds 900 \
      --stop-file "$SO_WORK/stop-load" >"$SO_WORK/load-$route" 2>&1) &
    local load_pid=$! i target bench_switchover
    wait_for "the writer's first rows through $route" 60 bench_rows || true
    for i in $(seq 1 "$switchovers"); do
      target=demo-2; [[ $(so_primary) == demo-2 ]] && target=demo-1
      bench_switchover=bench-pooler-${route#demo-}-$i
      apply_switchover "$bench_switchover" "$target"
      wait_for "$bench_switchover ended" 120 bench_switchover_ended || true
      wait_for "currentPrimary $target" 30 bench_primary_is "$target" || true
      # Settled, the old primary streaming again, before the next one.
      wait_for "the standby streaming" 120 so_standbys_streaming 1 || true
    done
    touch "$SO_WORK/stop-load"
    wait "$load_pid" || true
    local figures failed stored
    figures=$(tail -1 "$SO_WORK/load-$route")
    failed=$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' <<<"$figures")
    stored=$(psql_to "$so_ns" demo-rw "SELECT count(*) FROM bench_load")
    printf 'pooler bench through %s, %d planned switchovers: %s; failed per switchover %s; stored %s\n' \
      "$route" "$switchovers" "$figures" "$(echo "scale=1; ${failed:-0} / $switchovers" | bc)" "$stored"
  done
  so_cleanup
}
if [[ $only == pooler ]]; then bench_pooler; echo "checks during the benchmark: $PASSED passed, $FAILED failed"; exit 0; fi

so_init relevo-bench-switchover
gap=(); writable=(); completed=(); streaming=()
record() {
  printf '%s: write gap %ss, writable after %ss, Completed in %ss, old primary streaming after %ss\n' \
    "$1" "$FIG_GAP" "$FIG_WRITABLE" "$FIG_COMPLETED" "${FIG_STREAMING:-n/a}"
  gap+=("$FIG_GAP"); writable+=("$FIG_WRITABLE"); completed+=("$FIG_COMPLETED")
  [[ -z ${FIG_STREAMING:-} ]] || streaming+=("$FIG_STREAMING")
}
fence=()
for i in $(seq 1 "${BENCH_SWITCHOVERS:-5}"); do
  target=demo-2; [[ $(so_primary) == demo-2 ]] && target=demo-1
  run_scenario "planned #$i" planned "bench-planned-$i" "$target"
  record "planned #$i -> $target"
  # The fence: from entering Fencing to the old primary seen in recovery (CatchingUp).
  f=$(phase_gap "bench-planned-$i" Fencing CatchingUp) && fence+=("$f") && echo "planned #$i: fence ${f}s"
  # The PgCluster status follows the switchover; the next run starts from it.
  wait_for "currentPrimary $target" 30 bash -c "[[ \$(source '$E2E_DIR/lib.sh'; so_ns=$so_ns; \
    k -n $so_ns get pgclusters.relevo.dev demo -o jsonpath='{.status.currentPrimary}') == $target ]]" || true
done
stats 'planned: write gap' s "${gap[@]}"
stats 'planned: writable after the request' s "${writable[@]}"
stats 'planned: Completed' s "${completed[@]}"
stats 'planned: old primary streaming again' s "${streaming[@]}"
stats 'planned: fence (Fencing -> CatchingUp, the direct channel)' s "${fence[@]}"

gap=(); writable=(); completed=(); streaming=()
delay=$(k -n "$so_ns" get pgclusters.relevo.dev demo -o jsonpath='{.spec.failover.delay}')
lost=()
for i in $(seq 1 "${BENCH_FAILOVERS:-3}"); do
  prepare_unplanned
  run_scenario "failover #$i" unplanned_failover
  record "failover #$i ($switchover)"
  lost+=("$FIG_LOST")
done
stats "failover (delay $delay): write gap" s "${gap[@]}"
stats "failover (delay $delay): writable after losing the primary" s "${writable[@]}"
stats 'failover: Completed (lost instance rebuilt)' s "${completed[@]}"
stats 'failover: acknowledged rows lost (asynchronous replication)' ' rows' "${lost[@]}"

# Partitions: on kind the primary's node is cut off, on the local bed its pod;
# either way it keeps running.
gap=(); writable=(); completed=(); streaming=(); last_ack=()
for i in $(seq 1 "${BENCH_PARTITIONS:-2}"); do
  if [[ $RELEVO_CLUSTER == kind ]]; then
    ready_for_fault
    run_scenario "partition #$i" partition_primary_node "${PARTITION_SECONDS:-30}"
  else
    run_scenario "partition #$i" partition_primary "${PARTITION_SECONDS:-30}"
  fi
  check_no_write_after_promotion "partition #$i"
  record "partition #$i ($switchover)"
  last_ack+=("$FIG_LAST_OLD_ACK")
done
stats "partition (delay $delay): writable after the cut" s "${writable[@]}"
stats 'partition: cut-off primary last acknowledged a write after the cut' s "${last_ack[@]}"
[[ $only != all ]] || bench_pooler
echo "checks during the benchmark: $PASSED passed, $FAILED failed"
