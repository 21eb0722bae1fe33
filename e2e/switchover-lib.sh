# Switchovers under write load, shared by the e2e story (tests/switchover.sh)
# and the benchmark (bench.sh). Sourced after lib.sh.
#
# A writer inserts a numbered row through demo-rw every ~50 ms and logs which
# were acknowledged or refused, with the time. A watcher polls every instance
# for pg_is_in_recovery() every ~200 ms. `run_scenario` starts both, runs an
# action, waits for the Switchover to complete, stops them and checks:
#   - every acknowledged row exists;
#   - never two instances out of recovery at once;
#   - the old primary streams from the new one again;
#   - the Switchover reached Completed.
# It leaves its figures in FIG_GAP (longest stretch without an acknowledged
# write), FIG_WRITABLE (action start -> first acknowledged write after the
# outage), FIG_COMPLETED (the Switchover's own duration) and FIG_STREAMING
# (action start -> the old primary seen streaming from the new one; an upper
# bound, as it is checked after the writer stops).

SO_WORK=$(mktemp -d)

# so_init NAMESPACE [INSTANCES]: a fresh namespace holding the sample cluster
# `demo`, with INSTANCES instances (the sample's 2 by default).
so_init() {
  so_ns=$1
  local instances=${2:-2}
  k delete namespace "$so_ns" --ignore-not-found --wait=true >/dev/null
  k create namespace "$so_ns" >/dev/null
  trap so_cleanup EXIT
  sed "s/^  instances: 2$/  instances: $instances/" "$REPO_ROOT/manifests/samples/pgcluster.yaml" \
    | k -n "$so_ns" apply -f - >/dev/null
  if ! k -n "$so_ns" wait --for=condition=Ready pgclusters.relevo.dev/demo --timeout=240s >/dev/null; then
    fail "PgCluster demo not Ready in 180s: $(k -n "$so_ns" get pgclusters.relevo.dev demo -o jsonpath='{.status.conditions}')"
    return 1
  fi
  psql_to "$so_ns" demo-rw "CREATE TABLE IF NOT EXISTS load(id int primary key, at timestamptz default now())"
  so_su_pass=$(so_secret superuser password)
  so_app_pass=$(so_secret app password)
  so_rw_ip=$(k -n "$so_ns" get service demo-rw -o jsonpath='{.spec.clusterIP}')
  so_scenarios=0
}

# so_routes: where demo-rw sends connections now (its EndpointSlices) and the instances'
# role labels, readiness and addresses.
so_routes() {
  k -n "$so_ns" get endpointslices -l kubernetes.io/service-name=demo-rw \
    -o jsonpath='{range .items[*].endpoints[*]}demo-rw -> {.targetRef.name} {.addresses[0]} ready={.conditions.ready} serving={.conditions.serving} terminating={.conditions.terminating}{"\n"}{end}' || true
  k -n "$so_ns" get pods -l relevo.dev/cluster=demo,relevo.dev/instance -L relevo.dev/role -o wide || true
}

so_cleanup() {
  touch "$SO_WORK/stop" "$SO_WORK/stop-pinned"
  heal_partition
  [[ -z ${pinned_pid:-} ]] || kill "$pinned_pid" 2>/dev/null || true
  wait
  local node
  for node in $(k get nodes -o name); do k uncordon "$node" >/dev/null 2>&1 || true; done
  k delete namespace "$so_ns" --wait=false >/dev/null 2>&1 || true
}

# so_diagnose SWITCHOVER: what an expert would look at when SWITCHOVER went
# wrong, on stderr: its status, the pods and their markers, the live operator's
# log lines about this namespace, and each instance's last log lines.
so_diagnose() {
  say "diagnostics for $1 in $so_ns"
  k -n "$so_ns" get switchovers.relevo.dev "$1" -o jsonpath='{.status}{"\n"}' >&2 || true
  k -n "$so_ns" get pods -o wide >&2 || true
  k -n "$so_ns" get pods -o json | jq -r '.items[] | "\(.metadata.name) \(.metadata.annotations // {}
    | with_entries(select(.key | startswith("relevo.dev/"))) | tostring)"' >&2 || true
  local operator pod
  operator=$(live_operator | awk '{print $1}')
  [[ -z $operator ]] || k -n relevo-system logs "$operator" --tail=400 2>&1 | grep -F "$so_ns" | tail -60 >&2 || true
  for pod in $(k -n "$so_ns" get pods -l relevo.dev/cluster=demo,relevo.dev/instance -o name); do
    say "$pod (postgres), last lines"
    k -n "$so_ns" logs "$pod" -c postgres --tail=25 >&2 2>&1 || true
  done
}

# so_diagnose_streaming: why standbys do not stream, on stderr: the primary's
# pg_stat_replication, each instance's WAL receiver and its last log lines.
so_diagnose_streaming() {
  say "standbys not all streaming 20 s after the fault ended; what each instance says"
  PSQL_ROLE=superuser psql_to "$so_ns" demo-rw \
    "SELECT application_name, client_addr, state, sync_state FROM pg_stat_replication" >&2 2>&1 || true
  local pod
  for pod in $(k -n "$so_ns" get pods -l relevo.dev/cluster=demo,relevo.dev/instance \
      -o jsonpath='{range .items[*]}{.metadata.name}={.status.podIP}{" "}{end}'); do
    say "${pod%%=*} at ${pod#*=}: WAL receiver, then the last log lines"
    PGPASSWORD=$so_su_pass PGCONNECT_TIMEOUT=2 psql -h "${pod#*=}" -U postgres -d postgres -XAtq -c \
      "SELECT pg_is_in_recovery(), status, sender_host, last_msg_receipt_time, latest_end_lsn FROM pg_stat_wal_receiver RIGHT JOIN (SELECT 1) one ON true" >&2 2>&1 || true
    k -n "$so_ns" logs "${pod%%=*}" -c postgres --tail=15 >&2 2>&1 || true
  done
  # Whether a pod was replaced (and when), and what kubelet and the controllers did to them.
  k -n "$so_ns" get pods -l relevo.dev/cluster=demo,relevo.dev/instance -o custom-columns=\
NAME:.metadata.name,UID:.metadata.uid,CREATED:.metadata.creationTimestamp,DELETING:.metadata.deletionTimestamp,NODE:.spec.nodeName >&2 2>&1 || true
  k -n "$so_ns" get events --field-selector involvedObject.kind=Pod --sort-by=.lastTimestamp 2>&1 \
    | grep -E ' demo-[0-9]+-0 |pod/demo-[0-9]+-0' | tail -20 >&2 || true
}
# so_streams_from_primary INSTANCE: INSTANCE streams from the primary.
so_streams_from_primary() {
  [[ $(PSQL_ROLE=superuser psql_to "$so_ns" demo-rw \
    "SELECT count(*) FROM pg_stat_replication WHERE application_name = '$1' AND state = 'streaming'") == 1 ]]
}

so_secret() { k -n "$so_ns" get secret "demo-$1" -o jsonpath="{.data.$2}" | base64 -d; }
so_primary() { k -n "$so_ns" get pgclusters.relevo.dev demo -o jsonpath='{.status.currentPrimary}'; }
# so_node: the node the primary's pod runs on.
so_node() { so_node_of "$(so_primary)"; }
# so_node_of INSTANCE: the node INSTANCE's pod runs on.
so_node_of() { k -n "$so_ns" get pod "$1-0" -o jsonpath='{.spec.nodeName}'; }
# so_standbys_streaming N: N standbys stream from the primary (pg_stat_replication).
so_standbys_streaming() {
  [[ $(PSQL_ROLE=superuser psql_to "$so_ns" demo-rw \
    "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == "$1" ]]
}
# so_client_env SERVICE FILE: libpq's environment for an application of the
# app database dialling SERVICE (demo-rw, demo-pooler) over verify-full, as an
# application gets it, written to FILE (sourced, so no password reaches a
# command line).
so_client_env() {
  local ip ca
  ip=$(k -n "$so_ns" get service "$1" -o jsonpath='{.spec.clusterIP}')
  ca=$(cluster_ca "$so_ns" demo)
  {
    printf 'export PGHOST=%s.%s.svc PGHOSTADDR=%s PGPORT=5432 PGDATABASE=app\n' "$1" "$so_ns" "$ip"
    printf 'export PGUSER=%q PGPASSWORD=%q\n' "$(so_secret app username)" "$(so_secret app password)"
    printf 'export PGSSLMODE=verify-full PGSSLROOTCERT=%q PGCONNECT_TIMEOUT=5\n' "$ca"
  } >"$2"
  chmod 600 "$2"
}

now() { date +%s.%N; }

# writer FIRST COUNT: inserts rows FIRST.. one by one, at most COUNT or until
# $SO_WORK/stop exists.
so_writer() {
  local id=$1 last=$(($1 + $2))
  while ((id < last)) && [[ ! -e $SO_WORK/stop ]]; do
    # Each insert is bounded: one sent to a frozen primary (whose kernel keeps the
    # connection open) would otherwise hang until the thaw, and the writer would
    # measure its own stuck client instead of when -rw takes writes again. A
    # timed-out insert counts as refused, never as acknowledged.
    if PGPASSWORD=$so_app_pass PGCONNECT_TIMEOUT=1 timeout 3 psql -h "$so_rw_ip" -U app -d app -XAtq \
        -c "INSERT INTO load(id) VALUES ($id)" >/dev/null 2>&1; then
      echo "$id $(now)" >>"$SO_WORK/acked"
    else
      echo "$id $(now)" >>"$SO_WORK/refused"
    fi
    id=$((id + 1))
    sleep 0.05
  done
}

# watcher: every ~200 ms (at most 3000 times), which instances are out of
# recovery, asked of each pod directly.
so_watcher() {
  local n=0 pod r primaries
  while [[ ! -e $SO_WORK/stop ]] && ((n < 3000)); do
    primaries=()
    for pod in $(k -n "$so_ns" get pods -l relevo.dev/cluster=demo,relevo.dev/instance \
        -o jsonpath='{range .items[*]}{.metadata.name}={.status.podIP}{" "}{end}' 2>/dev/null); do
      [[ ${pod#*=} ]] || continue
      r=$(PGPASSWORD=$so_su_pass PGCONNECT_TIMEOUT=1 psql -h "${pod#*=}" -U postgres -d postgres -XAtq \
        -c "SELECT pg_is_in_recovery()" 2>/dev/null) || continue
      [[ $r == f ]] && primaries+=("${pod%%=*}")
    done
    echo "$(now) ${#primaries[@]} ${primaries[*]}" >>"$SO_WORK/roles"
    n=$((n + 1))
    sleep 0.2
  done
}

# acked_after TIME: succeeds once a write was acknowledged after TIME.
acked_after() { awk -v t="$1" '$2 > t {found = 1} END {exit !found}' "$SO_WORK/acked"; }

# switchover_phase NAME
switchover_phase() { k -n "$so_ns" get switchovers.relevo.dev "$1" -o jsonpath='{.status.phase}' 2>/dev/null; }

# apply_switchover NAME TARGET [MODE]
apply_switchover() {
  k -n "$so_ns" apply -f - >/dev/null <<YAML
apiVersion: relevo.dev/v1alpha1
kind: Switchover
metadata: {name: $1}
spec: {cluster: demo, targetInstance: $2, mode: ${3:-Planned}}
YAML
}

# run_scenario NAME ACTION...: ACTION must set $switchover to the Switchover
# carrying it out, or to nothing when the primary stayed where it was (a pod
# restarted in place before any failover). An ACTION that ends a fault sets
# $so_recovered_at to when it did, for the "streams again within 20 s" check.
# With so_allow_loss=1 (an unplanned failover on asynchronous replication)
# acknowledged rows that are missing are reported in FIG_LOST, not failed.
run_scenario() {
  local name=$1; shift
  rm -f "$SO_WORK/stop"
  so_recovered_at= so_fault_at=
  : >"$SO_WORK/acked"; : >"$SO_WORK/refused"; : >"$SO_WORK/roles"
  so_scenarios=$((so_scenarios + 1))
  local first=$((so_scenarios * 10000)) started old_primary
  so_writer "$first" 6000 & local writer_pid=$!
  so_watcher & local watcher_pid=$!
  if ! wait_for "the writer's first acknowledged insert" 30 acked_after 0; then
    fail "$name: no write acknowledged before the action"
  fi
  old_primary=$(so_primary)
  started=$(now)
  "$@"
  local phase
  if [[ -z $switchover ]]; then
    if wait_for "$old_primary writable again" 120 acked_after "$(now)"; then
      pass "$name: no role move was needed, $old_primary is writable again"
    else
      fail "$name: no Switchover was started and $old_primary is not writable again"
    fi
  elif [[ $switchover == none ]]; then
    : # the action failed already and said why; there is nothing to wait for
  elif wait_for "$switchover Completed" 240 bash -c "[[ \$(source '$E2E_DIR/lib.sh'; k -n $so_ns get switchovers.relevo.dev $switchover -o jsonpath='{.status.phase}') =~ ^(Completed|Failed)$ ]]" \
      && phase=$(switchover_phase "$switchover") && [[ $phase == Completed ]]; then
    pass "$name: $switchover Completed ($(k -n "$so_ns" get switchovers.relevo.dev "$switchover" -o jsonpath='{.status.from} -> {.status.to} in {.status.durationSeconds}s'))"
  else
    fail "$name: $switchover did not complete: $(k -n "$so_ns" get switchovers.relevo.dev "$switchover" -o jsonpath='{.status.phase}: {.status.reason}' 2>&1)"
    so_diagnose "$switchover"
  fi
  # Keep writing until the new primary has acknowledged writes after completion.
  local done_at; done_at=$(now)
  wait_for "writes acknowledged after $switchover" 30 acked_after "$done_at" \
    || fail "$name: no write acknowledged after the switchover"
  touch "$SO_WORK/stop"
  wait "$writer_pid" "$watcher_pid"

  local acked missing two
  FIG_STREAMING=
  acked=$(wc -l <"$SO_WORK/acked")
  awk '{print $1}' "$SO_WORK/acked" | sort >"$SO_WORK/acked-ids"
  # Read back through demo-rw. A failed attempt is shown with what demo-rw routed to (its
  # EndpointSlices and the pods' role labels) and retried, at most 5 times; it must not end
  # the story without a word, as `set -e` did in the CI run of 2026-12-07 13:21.
  local tries
  for ((tries = 1; tries <= 5; tries++)); do
    PSQL_ROLE=superuser psql_to "$so_ns" demo-rw \
      "SELECT id FROM load WHERE id >= $first AND id < $((first + 6000))" >"$SO_WORK/stored-raw" 2>"$SO_WORK/stored-err" \
      && break
    say "$name: reading the stored rows through demo-rw failed (attempt $tries): $(cat "$SO_WORK/stored-err")"
    so_routes >&2
    sleep 1
  done
  ((tries <= 5)) || fail "$name: the stored rows could not be read through demo-rw in 5 attempts"
  sort "$SO_WORK/stored-raw" >"$SO_WORK/stored"
  missing=$(comm -23 "$SO_WORK/acked-ids" "$SO_WORK/stored" | wc -l)
  FIG_LOST=$missing
  if ((acked > 0 && missing == 0)); then
    pass "$name: all $acked acknowledged rows present ($(wc -l <"$SO_WORK/refused") inserts refused)"
  elif ((acked > 0)) && [[ ${so_allow_loss:-0} == 1 ]]; then
    pass "$name: $missing of $acked acknowledged rows lost (asynchronous replication, unplanned failover)"
  else
    fail "$name: $missing of $acked acknowledged rows missing"
  fi
  two=$(awk '$2 > 1 {print; exit}' "$SO_WORK/roles")
  if [[ -z $two ]]; then
    pass "$name: never two primaries ($(wc -l <"$SO_WORK/roles") polls of every instance)"
  else
    fail "$name: two primaries at once: $two"
  fi
  local standbys
  standbys=$(($(k -n "$so_ns" get pgclusters.relevo.dev demo -o jsonpath='{.spec.instances}') - 1))
  if [[ $(so_primary) != "$old_primary" && -n $so_recovered_at ]]; then
    # Past the 20 s target, what every instance says is printed while the old primary is
    # still not streaming, before waiting out the rest.
    local until_target
    until_target=$(awk -v s="$so_recovered_at" -v n="$(now)" 'BEGIN {l = int(s + 20 - n); print (l < 1 ? 1 : l)}')
    wait_for "$old_primary streaming" "$until_target" so_streams_from_primary "$old_primary" 2>/dev/null \
      || so_diagnose_streaming
  fi
  if [[ $(so_primary) == "$old_primary" ]]; then
    : # no role move: the standbys' streaming is checked below
  elif wait_for "$old_primary streaming from the new primary" 120 so_streams_from_primary "$old_primary"; then
    FIG_STREAMING=$(awk -v s="$started" -v e="$(now)" 'BEGIN {printf "%.2f", e - s}')
    pass "$name: $old_primary streams from the new primary"
  else
    fail "$name: $old_primary does not stream from the new primary"
  fi
  FIG_STREAM_AFTER_RECOVERY=
  if [[ -n $so_recovered_at ]]; then
    # Past the 20 s target, what each standby's WAL receiver and log say is
    # printed while the slowness lasts, before waiting out the rest.
    local left
    left=$(awk -v s="$so_recovered_at" -v n="$(now)" 'BEGIN {l = int(s + 20 - n); print (l < 1 ? 1 : l)}')
    wait_for "$standbys standbys streaming" "$left" so_standbys_streaming "$standbys" 2>/dev/null \
      || so_diagnose_streaming
    if wait_for "$standbys standbys streaming" 100 so_standbys_streaming "$standbys"; then
      FIG_STREAM_AFTER_RECOVERY=$(awk -v s="$so_recovered_at" -v e="$(now)" 'BEGIN {printf "%.2f", e - s}')
      # The target is 20 s (issue 10); a miss is reported, not failed. The bound for failing
      # is the same 120 s as the old primary's own check above: after a partition's heal,
      # a diverged old primary took 56-83 s to rejoin in runs of 2026-12-07 (one cause, a
      # supervisor deaf to SIGTERM after a stop that reached nobody, is fixed; the CI run of
      # 071af58 still saw 83 s, which so_diagnose_streaming now covers).
      if awk -v f="$FIG_STREAM_AFTER_RECOVERY" 'BEGIN {exit !(f <= 20)}'; then
        pass "$name: all $standbys standbys stream ${FIG_STREAM_AFTER_RECOVERY}s after the fault ended (at most 20 s)"
      else
        pass "$name: all $standbys standbys stream ${FIG_STREAM_AFTER_RECOVERY}s after the fault ended (TARGET MISSED: more than 20 s)"
      fi
    else
      fail "$name: not all $standbys standbys stream 120 s after the fault ended"
      PSQL_ROLE=superuser psql_to "$so_ns" demo-rw "SELECT application_name, state FROM pg_stat_replication" >&2 || true
    fi
  fi

  # Figures. The gap: the longest stretch between two acknowledged writes,
  # which holds the whole write-unavailable window (the writer's own pace is
  # ~0.1 s). Writable: from the fault (so_fault_at, set by a fault action just
  # before it strikes; else the action's start) to the first acknowledged write
  # after the first refused one (or after that start, when none was refused).
  # Before 2026-12-07 it counted from the action's start, which for the
  # partitioned and frozen scenarios included ~10 s of pinned-writer set-up.
  FIG_GAP=$(awk 'NR > 1 && $2 - p > g {g = $2 - p} {p = $2} END {printf "%.2f", g}' "$SO_WORK/acked")
  local outage
  started=${so_fault_at:-$started}
  outage=$(awk -v s="$started" '$2 > s {print $2; exit}' "$SO_WORK/refused")
  FIG_WRITABLE=$(awk -v s="$started" -v o="${outage:-$started}" \
    '$2 > o {printf "%.2f", $2 - s; exit}' "$SO_WORK/acked")
  FIG_COMPLETED=
  [[ -z $switchover || $switchover == none ]] || FIG_COMPLETED=$(k -n "$so_ns" get switchovers.relevo.dev "$switchover" -o jsonpath='{.status.durationSeconds}')
  say "$name: longest write gap ${FIG_GAP}s, writable after ${FIG_WRITABLE}s, Completed in ${FIG_COMPLETED:-(no switchover)}s, ${FIG_LOST} acknowledged rows lost"
  [[ -z $switchover || $switchover == none ]] || say "$name: phases $(k -n "$so_ns" get switchovers.relevo.dev "$switchover" \
    -o jsonpath='{range .status.phaseTimestamps[*]}{.phase}@{.time} {end}')"
}

# first_phase_after_pending NAME: the phase Switchover NAME enters after Pending,
# on stdout (nothing if it stays there 30 s). A watch, not a poll, so that a fault
# struck right after it lands in the middle of the switchover.
first_phase_after_pending() {
  local phase= i watch_pid
  timeout 60 "$KUBECTL" -n "$so_ns" get switchovers.relevo.dev "$1" -w \
    -o jsonpath='{.status.phase}{"\n"}' >"$SO_WORK/phases" 2>&1 & watch_pid=$!
  for ((i = 0; i < 600 && ${#phase} == 0; i++)); do
    phase=$(grep -m1 -vxE 'Pending|' "$SO_WORK/phases") || sleep 0.05
  done
  kill "$watch_pid" 2>/dev/null || true
  echo "$phase"
}

# Actions ---------------------------------------------------------------------

# planned NAME TARGET
planned() {
  switchover=$1
  apply_switchover "$1" "$2"
}

# node_loss: the primary's pod is deleted and cannot come back (the node is
# cordoned), as when its node dies. Once the failover has promoted a standby,
# the node returns (uncordon) and the lost instance must be rebuilt.
node_loss() {
  local lost node
  lost=$(so_primary)
  node=$(so_node)
  k cordon "$node" >/dev/null
  k -n "$so_ns" delete pod "$lost-0" --wait=false >/dev/null
  await_failover "$lost was lost"
  k uncordon "$node" >/dev/null
}

# unplanned_failover: the primary lost the way each bed can lose it: on kind its
# node is killed (kill_primary_node), on the local bed its pod is deleted with
# the node cordoned (node_loss). Run prepare_unplanned before the scenario.
unplanned_failover() {
  if [[ $RELEVO_CLUSTER == kind ]]; then kill_primary_node; else node_loss; fi
}
# prepare_unplanned: on kind the operator on the control plane and the primary
# on a worker (ready_for_fault), and rows acknowledged but not yet replicated
# when the node died may be lost (asynchronous replication).
prepare_unplanned() {
  [[ $RELEVO_CLUSTER == kind ]] || return 0
  ready_for_fault
  so_allow_loss=1
}

# await_failover WHAT: sets $switchover to the Failover Switchover relevo starts
# for WHAT (none, and the check fails, when it starts none within 60 s) and waits until it has
# promoted a standby (or ended).
await_failover() {
  switchover=
  if wait_for "a Failover Switchover after $1" 60 failover_exists; then
    switchover=$(failover_exists)
    seen_failovers+=("$switchover")
    wait_for "$switchover promoting a standby" 60 bash -c \
      "[[ \$(source '$E2E_DIR/lib.sh'; k -n $so_ns get switchovers.relevo.dev $switchover -o jsonpath='{.status.phase}') =~ ^(Rebuilding|Completed|Failed)$ ]]" || true
  else
    fail "no Failover Switchover within 60 s after $1"
    switchover=none
  fi
}

# failover_exists: prints the newest Failover Switchover created after the
# previous ones, failing when there is none.
failover_exists() {
  local name
  name=$(k -n "$so_ns" get switchovers.relevo.dev --sort-by=.metadata.creationTimestamp \
    -o jsonpath='{range .items[?(@.spec.mode=="Failover")]}{.metadata.name}{"\n"}{end}' \
    | grep -vxF -f <(printf '%s\n' "${seen_failovers[@]:-}") | tail -1)
  [[ -n $name ]] && echo "$name"
}
seen_failovers=()

# Pod partitions (the local bed, where pod network namespaces are the host's) --

# pod_netns POD: the host network namespace that holds POD's address.
pod_netns() {
  local ip ns addrs
  ip=$(k -n "$so_ns" get pod "$1" -o jsonpath='{.status.podIP}')
  [[ -n $ip ]] || return 1
  for ns in $(ip netns list | awk '{print $1}'); do
    addrs=$(ip netns exec "$ns" ip -o -4 addr show 2>/dev/null)
    if [[ $addrs == *" $ip/"* ]]; then echo "$ns"; return 0; fi
  done
  return 1
}

# pinned_writer NETNS ADDRESS: inserts into pinned(id) straight at ADDRESS from
# inside NETNS (the cut-off side of a partition; `-` for this machine's own),
# logging acknowledgements to $SO_WORK/pinned until $SO_WORK/stop-pinned
# exists (at most 3000 tries).
pinned_writer() {
  local id=0 inside=()
  [[ $1 == - ]] || inside=(ip netns exec "$1")
  while ((id < 3000)) && [[ ! -e $SO_WORK/stop-pinned ]]; do
    if PGPASSWORD=$so_app_pass PGCONNECT_TIMEOUT=1 timeout 2 "${inside[@]}" psql -h "$2" -U app -d app -XAtq \
        -c "INSERT INTO pinned(id) VALUES ($id)" >/dev/null 2>&1; then
      echo "$id $(now)" >>"$SO_WORK/pinned"
    fi
    id=$((id + 1))
    sleep 0.05
  done
}

# partition_primary SECONDS: every packet of the primary's pod dropped, the pod
# still running (and a writer pinned to it from inside), healed after SECONDS.
partition_primary() {
  local lost ns ip seconds=$1
  lost=$(so_primary)
  ns=$(pod_netns "$lost-0") || { fail "no network namespace found for $lost-0"; switchover=none; return; }
  ip=$(k -n "$so_ns" get pod "$lost-0" -o jsonpath='{.status.podIP}')
  psql_to "$so_ns" demo-rw "CREATE TABLE IF NOT EXISTS pinned(id int, at timestamptz default now())" >/dev/null
  : >"$SO_WORK/pinned"; rm -f "$SO_WORK/stop-pinned"
  pinned_writer "$ns" "$ip" & pinned_pid=$!
  # Without a write acknowledged before the cut, "none after the promotion" proves nothing.
  wait_for "the pinned writer's first insert on $lost" 20 test -s "$SO_WORK/pinned" \
    || fail "the writer pinned to $lost-0 never got a write acknowledged"
  partition_ns=$ns
  so_fault_at=$(now)
  ip netns exec "$ns" iptables -I INPUT -i eth0 -j DROP
  ip netns exec "$ns" iptables -I OUTPUT -o eth0 -j DROP
  partitioned_at=$(now)
  say "partitioned $lost-0 ($ip, netns $ns) at $partitioned_at"
  await_failover "$lost was cut off"
  # Hold the partition for the rest of SECONDS (whole seconds), then heal it.
  local until=$((${partitioned_at%.*} + seconds))
  wait_for "the partition's end" $((seconds + 5)) bash -c "(( \$(date +%s) >= $until ))" || true
  heal_partition
  touch "$SO_WORK/stop-pinned"; wait "$pinned_pid" 2>/dev/null || true
}

heal_partition() {
  [[ -n ${partition_ns:-} ]] || return 0
  ip netns exec "$partition_ns" iptables -D INPUT -i eth0 -j DROP 2>/dev/null || true
  ip netns exec "$partition_ns" iptables -D OUTPUT -o eth0 -j DROP 2>/dev/null || true
  partition_ns=
}

# check_no_write_after_promotion NAME: the cut-off primary acknowledged no write
# once its successor was being promoted (the Switchover's Promoting time).
check_no_write_after_promotion() {
  local promoted last
  promoted=$(k -n "$so_ns" get switchovers.relevo.dev "$switchover" \
    -o jsonpath='{range .status.phaseTimestamps[?(@.phase=="Promoting")]}{.time}{end}')
  [[ -n $promoted ]] || { fail "$1: $switchover has no Promoting time"; return; }
  promoted=$(date -d "$promoted" +%s.%N)
  last=$(awk 'END {print $2}' "$SO_WORK/pinned")
  [[ -n $last ]] || { fail "$1: the pinned writer never got a write acknowledged"; return; }
  FIG_LAST_OLD_ACK=$(awk -v l="${last:-0}" -v p="$partitioned_at" 'BEGIN {printf "%.2f", l - p}')
  if awk -v l="$last" -v p="$promoted" 'BEGIN {exit !(l < p)}'; then
    pass "$1: the cut-off primary's last acknowledged write came ${FIG_LAST_OLD_ACK}s after the cut, before the promotion ($(wc -l <"$SO_WORK/pinned") pinned writes acknowledged)"
  else
    fail "$1: the cut-off primary acknowledged a write at $last, after the promotion at $promoted"
  fi
}

# phase_gap SWITCHOVER FROM TO: seconds between entering phase FROM and phase TO.
phase_gap() {
  local times
  times=$(k -n "$so_ns" get switchovers.relevo.dev "$1" -o jsonpath='{range .status.phaseTimestamps[*]}{.phase}={.time}{"\n"}{end}')
  local a b
  a=$(awk -F= -v p="$2" '$1 == p {print $2; exit}' <<<"$times")
  b=$(awk -F= -v p="$3" '$1 == p {print $2; exit}' <<<"$times")
  [[ -n $a && -n $b ]] || return 1
  awk -v a="$(date -d "$a" +%s.%N)" -v b="$(date -d "$b" +%s.%N)" 'BEGIN {printf "%.2f", b - a}'
}

# Node faults (the kind cluster; e2e/faults.sh is sourced) ---------------------

KIND_CONTROL_PLANE=${KIND_NODES[0]:-}

# operator_pods: "POD NODE" of each operator replica that is Ready and not being
# deleted (a pod on a dead node stays listed, Terminating or not Ready).
operator_pods() {
  k -n relevo-system get pods -l app.kubernetes.io/name=relevo-operator -o jsonpath='{range .items[*]}{.metadata.name} {.spec.nodeName} {.status.conditions[?(@.type=="Ready")].status} {.metadata.deletionTimestamp}{"\n"}{end}' \
    | awk '$3 == "True" && NF == 3 {print $1, $2}'
}
# live_operator: "POD NODE" of the leading operator (the Lease's holder), if live.
live_operator() {
  local leader
  leader=$(operator_leader)
  [[ -z $leader ]] || operator_pods | awk -v leader="$leader" '$1 == leader'
}
# operator_pods_on NODE: the live operator replicas on NODE.
operator_pods_on() { operator_pods | awk -v node="$1" '$2 == node {print $1}'; }
operator_replica_on() { [[ -n $(operator_pods_on "$1") ]]; }
operator_leads_there() { local node; node=$(operator_node); echo "leading on: ${node:-none}"; [[ $node == "$1" ]]; }
# operator_leads_on NODE: makes the operator on NODE the leader. With no
# replica there, one standby is moved there first (the other nodes tainted
# while it is recreated); then a leader elsewhere is deleted: it releases the
# Lease on SIGTERM and the replica on NODE, standing by, takes it.
operator_leads_on() {
  local node=$1 leader standby other try
  [[ $(operator_node) == "$node" ]] && return 0
  if [[ -z $(operator_pods_on "$node") ]]; then
    leader=$(operator_leader)
    standby=$(k -n relevo-system get pods -l app.kubernetes.io/name=relevo-operator -o name | sed 's|pod/||' | grep -vxF "$leader" | head -1)
    say "moving the standby operator $standby to $node"
    for other in "${KIND_NODES[@]}"; do
      [[ $other == "$node" ]] || k taint nodes "$other" "$E2E_PLACING_TAINT" --overwrite >/dev/null
    done
    [[ -z $standby ]] || k -n relevo-system delete pod "$standby" --wait=false >/dev/null
    wait_for "an operator replica Ready on $node" 120 operator_replica_on "$node" \
      || fail "no operator replica became Ready on $node"
    for other in "${KIND_NODES[@]}"; do k taint nodes "$other" "$E2E_PLACING_TAINT-" >/dev/null 2>&1 || true; done
  fi
  # The deleted leader's replacement could, rarely, take the released Lease first.
  for ((try = 1; try <= 3; try++)); do
    leader=$(operator_leader)
    say "the operator leads on '$(operator_node)'; deleting its leader $leader so the one on $node takes over"
    k -n relevo-system delete pod "$leader" --wait=false >/dev/null
    wait_for "the operator on $node leading" 40 operator_leads_there "$node" && return 0
  done
  fail "the operator leads on '$(operator_node)', not on $node"
}
operator_node() { live_operator | awk '{print $2}'; }
instance_on() {
  local i
  for i in 1 2 3; do [[ $(so_node_of "demo-$i" 2>/dev/null) == "$1" ]] && { echo "demo-$i"; return; }; done
  return 1
}

# primary_away_from NODE...: a planned switchover (outside any scenario) when
# the primary runs on one of NODE...; the target is the instance on the first
# node that is not one of them.
primary_away_from() {
  local node target
  [[ " $* " == *" $(so_node) "* ]] || return 0
  for node in "${KIND_NODES[@]}"; do
    [[ " $* " == *" $node "* ]] && continue
    target=$(instance_on "$node") && break
  done
  [[ -n $target ]] || { fail "no instance away from $*"; return 1; }
  local name=ha-move-$((++moves))
  say "moving the primary from $(so_primary) to $target, off $*"
  apply_switchover "$name" "$target"
  wait_for "$name Completed" 120 bash -c "[[ \$(source '$E2E_DIR/lib.sh'; k -n $so_ns get switchovers.relevo.dev $name -o jsonpath='{.status.phase}') == Completed ]]" \
    || fail "$name: $(switchover_phase "$name")"
  # The PgCluster's status.currentPrimary follows at its next reconcile; the
  # faults aim at the node it names.
  wait_for "status.currentPrimary to name $target" 30 bash -c "[[ \$(source '$E2E_DIR/lib.sh'; k -n $so_ns get pgclusters.relevo.dev demo -o jsonpath='{.status.currentPrimary}') == $target ]]" \
    || fail "$name Completed but status.currentPrimary is $(so_primary), not $target"
}
moves=0

# fault_target: the primary's node, for a fault, on stdout; fails (and says so)
# when it is the control plane, which runs the API server: a fault there would
# cut off the test itself, not the primary.
fault_target() {
  local node
  node=$(so_node)
  if [[ -z $node || $node == "$KIND_CONTROL_PLANE" ]]; then
    fail "the primary $(so_primary) runs on '${node}', not on a worker: no fault injected"
    return 1
  fi
  echo "$node"
}

# ready_for_fault: every node Ready, the operator on the control plane, the
# primary on a worker, every standby streaming. Faults hit workers only: the
# API server runs on the control plane.
ready_for_fault() {
  local node
  for node in "${KIND_NODES[@]}"; do node_ready "$node" >/dev/null || fail "$node not Ready"; done
  operator_leads_on "$KIND_CONTROL_PLANE"
  primary_away_from "$KIND_CONTROL_PLANE"
  local standbys
  standbys=$(($(k -n "$so_ns" get pgclusters.relevo.dev demo -o jsonpath='{.spec.instances}') - 1))
  wait_for "$standbys standbys streaming" 180 so_standbys_streaming "$standbys" \
    || fail "not every standby streams before the fault"
}


# pinned_writer_in_pod INSTANCE SECONDS: like pinned_writer, from inside
# INSTANCE's own postgres container at its pod address: the cut-off side of a
# node partition. It goes through the node's containerd (podman exec, then
# crictl exec), which needs no network, and stops after SECONDS + 30 s at most.
pinned_writer_in_pod() {
  local pod=$1-0 node ip cid
  node=$(so_node_of "$1")
  ip=$(k -n "$so_ns" get pod "$pod" -o jsonpath='{.status.podIP}')
  cid=$(podman exec "$node" crictl ps -q --name postgres \
    --label "io.kubernetes.pod.name=$pod" --label "io.kubernetes.pod.namespace=$so_ns")
  [[ -n $cid ]] || { fail "no postgres container of $pod on $node"; return 1; }
  # The password goes in on standard input: never an argument.
  printf '%s\n' "$so_app_pass" | timeout $(($2 + 60)) podman exec -i "$node" crictl exec -i "$cid" bash -c '
    read -r PGPASSWORD; export PGPASSWORD
    end=$((SECONDS + '"$2"' + 30))
    for ((id = 0; id < 3000 && SECONDS < end; id++)); do
      if PGCONNECT_TIMEOUT=1 timeout 2 psql -h '"$ip"' -U app -d app -XAtq \
          -c "INSERT INTO pinned(id) VALUES ($id)" >/dev/null 2>&1; then
        echo "$id $(date +%s.%N)"
      fi
      sleep 0.05
    done' >>"$SO_WORK/pinned" 2>/dev/null &
  pinned_pid=$!
}

# start_pinned WRITER...: a fresh pinned table and log, WRITER started, and its
# first acknowledged insert awaited (without one, "none after the promotion"
# proves nothing).
start_pinned() {
  psql_to "$so_ns" demo-rw "CREATE TABLE IF NOT EXISTS pinned(id int, at timestamptz default now())" >/dev/null
  : >"$SO_WORK/pinned"; rm -f "$SO_WORK/stop-pinned"
  "$@"
  wait_for "the pinned writer's first insert" 30 test -s "$SO_WORK/pinned" \
    || fail "the writer pinned to the primary never got a write acknowledged"
}

stop_pinned() {
  touch "$SO_WORK/stop-pinned"
  [[ -z ${pinned_pid:-} ]] || { kill "$pinned_pid" 2>/dev/null || true; wait "$pinned_pid" 2>/dev/null || true; }
  pinned_pid=
}

# hold_until START SECONDS: returns once SECONDS whole seconds have passed since START.
hold_until() {
  local until=$((${1%.*} + $2))
  wait_for "the fault's end" $(($2 + 5)) bash -c "(( \$(date +%s) >= $until ))" || true
}

# kill_primary_node: the primary's node stops at once (kubelet, containerd and
# every pod on it), relevo fails over without it, and once the node is back the
# lost instance is rebuilt as a standby.
kill_primary_node() {
  local lost node
  lost=$(so_primary); node=$(fault_target) || { switchover=none; return 0; }
  so_fault_at=$(now)
  node_kill "$node"
  partitioned_at=$(now)
  await_failover "$node was killed"
  node_restart "$node"
  so_recovered_at=$(now)
}

# partition_primary_node SECONDS: the primary's node cut off from the other
# nodes and the API server for SECONDS, its pods running, a writer pinned to
# the primary on the cut-off side.
partition_primary_node() {
  local node
  node=$(fault_target) || { switchover=none; return 0; }
  start_pinned pinned_writer_in_pod "$(so_primary)" "$1"
  so_fault_at=$(now)
  node_partition "$node"
  partitioned_at=$(now)
  await_failover "$node was cut off"
  hold_until "$partitioned_at" "$1"
  node_heal "$node"
  so_recovered_at=$(now)
  stop_pinned
}

# freeze_primary_node SECONDS: every process of the primary's node frozen for
# SECONDS, then thawed; a writer on this machine is pinned to the old primary's
# pod address throughout, so a thawed primary that acknowledged a write would show.
freeze_primary_node() {
  local node ip
  node=$(fault_target) || { switchover=none; return 0; }
  ip=$(k -n "$so_ns" get pod "$(so_primary)-0" -o jsonpath='{.status.podIP}')
  start_pinned pinned_writer_bg - "$ip"
  so_fault_at=$(now)
  node_freeze "$node"
  partitioned_at=$(now)
  await_failover "$node was frozen"
  hold_until "$partitioned_at" "$1"
  node_thaw "$node"
  so_recovered_at=$(now)
  # Long enough after the thaw for a primary that did not fence itself to be caught.
  wait_for "5 s after the thaw" 10 bash -c "(( \$(date +%s) >= ${so_recovered_at%.*} + 5 ))" || true
  stop_pinned
}
pinned_writer_bg() { pinned_writer "$@" & pinned_pid=$!; }

# drain_primary_node: `kubectl drain` of the primary's node. relevo switches
# over first (a planned Switchover it creates); the PodDisruptionBudget holds
# the primary until it is a standby; then the node is uncordoned.
drain_primary_node() {
  local node before
  node=$(fault_target) || { switchover=none; return 0; }
  before=$(planned_switchovers)
  node_drain "$node" || fail "kubectl drain $node did not finish"
  switchover=$(planned_switchovers | grep -vxF -f <(printf '%s\n' "$before") | tail -1) || true
  [[ -n $switchover ]] || { fail "draining $node started no Switchover"; switchover=none; }
  node_uncordon "$node"
  so_recovered_at=$(now)
}
planned_switchovers() {
  k -n "$so_ns" get switchovers.relevo.dev --sort-by=.metadata.creationTimestamp \
    -o jsonpath='{range .items[?(@.spec.mode=="Planned")]}{.metadata.name}{"\n"}{end}'
}

# force_delete_primary: the primary's pod deleted with --force --grace-period=0.
# Its StatefulSet starts it again on the same node; relevo either fails over or
# finds the same primary back, and either way nothing acknowledged is lost.
force_delete_primary() {
  local lost uid
  lost=$(so_primary)
  # The new pod must be a new one (another uid) that is Ready, or a failover must start.
  uid=$(k -n "$so_ns" get pod "$lost-0" -o jsonpath='{.metadata.uid}')
  so_fault_at=$(now)
  k -n "$so_ns" delete pod "$lost-0" --force --grace-period=0 >/dev/null 2>&1
  partitioned_at=$(now)
  if wait_for "a Failover Switchover or $lost-0 back" 90 back_or_failover "$lost-0" "$uid"; then
    if failover_exists >/dev/null; then
      await_failover "$lost-0 was force-deleted"
      # A failover that looks after the replacement is Ready rightly refuses to act: the
      # primary is back, as when no failover starts at all.
      if [[ -n $switchover && $switchover != none && $(switchover_phase "$switchover") == Failed ]] \
        && k -n "$so_ns" get switchovers.relevo.dev "$switchover" -o jsonpath='{.status.reason}' \
          | grep -qF "primary $lost is reachable and ready"; then
        say "$switchover was called off: $lost was back first"
        switchover=
      fi
    else
      switchover=
    fi
  else
    fail "neither a failover nor $lost-0 Ready 90 s after the force delete"; switchover=none
  fi
  so_recovered_at=$(now)
  # The replacement pod starts while the deleted one may still stop PostgreSQL: whether it
  # had to wait for the volume (instance/volume_lock.rs) is worth seeing in the log.
  k -n "$so_ns" logs "$lost-0" -c postgres 2>/dev/null | grep -E "another process still uses this volume|the previous process ended" >&2 \
    || say "$lost-0 found its volume free at start"
}
# back_or_failover POD OLD_UID: a new Failover Switchover started, or POD is a
# new pod (not OLD_UID) and Ready.
back_or_failover() {
  failover_exists >/dev/null && return 0
  local row
  row=$(k -n "$so_ns" get pod "$1" -o jsonpath='{.metadata.uid} {.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) || return 1
  [[ ${row% *} != "$2" && ${row#* } == True ]]
}
