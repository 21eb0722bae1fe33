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

# so_init NAMESPACE: a fresh namespace holding the sample cluster `demo`.
so_init() {
  so_ns=$1
  k delete namespace "$so_ns" --ignore-not-found --wait=true >/dev/null
  k create namespace "$so_ns" >/dev/null
  trap so_cleanup EXIT
  k -n "$so_ns" apply -f "$REPO_ROOT/manifests/samples/pgcluster.yaml" >/dev/null
  if ! k -n "$so_ns" wait --for=condition=Ready pgclusters.relevo.dev/demo --timeout=180s >/dev/null; then
    fail "PgCluster demo not Ready in 180s: $(k -n "$so_ns" get pgclusters.relevo.dev demo -o jsonpath='{.status.conditions}')"
    return 1
  fi
  psql_to "$so_ns" demo-rw "CREATE TABLE IF NOT EXISTS load(id int primary key, at timestamptz default now())"
  so_su_pass=$(so_secret superuser password)
  so_app_pass=$(so_secret app password)
  so_rw_ip=$(k -n "$so_ns" get service demo-rw -o jsonpath='{.spec.clusterIP}')
  so_scenarios=0
}

so_cleanup() {
  touch "$SO_WORK/stop" "$SO_WORK/stop-pinned"
  heal_partition
  wait
  k uncordon "$(so_node)" >/dev/null 2>&1 || true
  k delete namespace "$so_ns" --wait=false >/dev/null 2>&1 || true
}

so_secret() { k -n "$so_ns" get secret "demo-$1" -o jsonpath="{.data.$2}" | base64 -d; }
so_node() { k get nodes -o jsonpath='{.items[0].metadata.name}'; }
so_primary() { k -n "$so_ns" get pgclusters.relevo.dev demo -o jsonpath='{.status.currentPrimary}'; }
now() { date +%s.%N; }

# writer FIRST COUNT: inserts rows FIRST.. one by one, at most COUNT or until
# $SO_WORK/stop exists.
so_writer() {
  local id=$1 last=$(($1 + $2))
  while ((id < last)) && [[ ! -e $SO_WORK/stop ]]; do
    if PGPASSWORD=$so_app_pass PGCONNECT_TIMEOUT=1 psql -h "$so_rw_ip" -U app -d app -XAtq \
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
# carrying it out.
run_scenario() {
  local name=$1; shift
  rm -f "$SO_WORK/stop"
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
  if wait_for "$switchover Completed" 240 bash -c "[[ \$(source '$E2E_DIR/lib.sh'; k -n $so_ns get switchovers.relevo.dev $switchover -o jsonpath='{.status.phase}') =~ ^(Completed|Failed)$ ]]" \
      && phase=$(switchover_phase "$switchover") && [[ $phase == Completed ]]; then
    pass "$name: $switchover Completed ($(k -n "$so_ns" get switchovers.relevo.dev "$switchover" -o jsonpath='{.status.from} -> {.status.to} in {.status.durationSeconds}s'))"
  else
    fail "$name: $switchover did not complete: $(k -n "$so_ns" get switchovers.relevo.dev "$switchover" -o jsonpath='{.status.phase}: {.status.reason}' 2>&1)"
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
  PSQL_ROLE=superuser psql_to "$so_ns" demo-rw \
    "SELECT id FROM load WHERE id >= $first AND id < $((first + 6000))" | sort >"$SO_WORK/stored"
  missing=$(comm -23 "$SO_WORK/acked-ids" "$SO_WORK/stored" | wc -l)
  if ((acked > 0 && missing == 0)); then
    pass "$name: all $acked acknowledged rows present ($(wc -l <"$SO_WORK/refused") inserts refused)"
  else
    fail "$name: $missing of $acked acknowledged rows missing"
  fi
  two=$(awk '$2 > 1 {print; exit}' "$SO_WORK/roles")
  if [[ -z $two ]]; then
    pass "$name: never two primaries ($(wc -l <"$SO_WORK/roles") polls of every instance)"
  else
    fail "$name: two primaries at once: $two"
  fi
  if wait_for "$old_primary streaming from the new primary" 120 bash -c \
      "[[ \$(source '$E2E_DIR/lib.sh'; PSQL_ROLE=superuser psql_to $so_ns demo-rw \"SELECT count(*) FROM pg_stat_replication WHERE application_name = '$old_primary' AND state = 'streaming'\") == 1 ]]"; then
    FIG_STREAMING=$(awk -v s="$started" -v e="$(now)" 'BEGIN {printf "%.2f", e - s}')
    pass "$name: $old_primary streams from the new primary"
  else
    fail "$name: $old_primary does not stream from the new primary"
  fi

  # Figures. The gap: the longest stretch between two acknowledged writes,
  # which holds the whole write-unavailable window (the writer's own pace is
  # ~0.1 s). Writable: from the action to the first acknowledged write after
  # the first refused one (or after the action, when none was refused).
  FIG_GAP=$(awk 'NR > 1 && $2 - p > g {g = $2 - p} {p = $2} END {printf "%.2f", g}' "$SO_WORK/acked")
  local outage
  outage=$(awk -v s="$started" '$2 > s {print $2; exit}' "$SO_WORK/refused")
  FIG_WRITABLE=$(awk -v s="$started" -v o="${outage:-$started}" \
    '$2 > o {printf "%.2f", $2 - s; exit}' "$SO_WORK/acked")
  FIG_COMPLETED=$(k -n "$so_ns" get switchovers.relevo.dev "$switchover" -o jsonpath='{.status.durationSeconds}')
  say "$name: longest write gap ${FIG_GAP}s, writable after ${FIG_WRITABLE}s, Completed in ${FIG_COMPLETED}s"
  say "$name: phases $(k -n "$so_ns" get switchovers.relevo.dev "$switchover" \
    -o jsonpath='{range .status.phaseTimestamps[*]}{.phase}@{.time} {end}')"
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

# await_failover WHAT: sets $switchover to the Failover Switchover relevo starts
# for WHAT (none when it starts none within 60 s) and waits until it has
# promoted a standby (or ended).
await_failover() {
  switchover=
  if wait_for "a Failover Switchover after $1" 60 failover_exists; then
    switchover=$(failover_exists)
    seen_failovers+=("$switchover")
    wait_for "$switchover promoting a standby" 60 bash -c \
      "[[ \$(source '$E2E_DIR/lib.sh'; k -n $so_ns get switchovers.relevo.dev $switchover -o jsonpath='{.status.phase}') =~ ^(Rebuilding|Completed|Failed)$ ]]" || true
  else
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
# inside NETNS, the cut-off side of a partition, logging acknowledgements to
# $SO_WORK/pinned until $SO_WORK/stop-pinned exists (at most 3000 tries).
pinned_writer() {
  local id=0
  while ((id < 3000)) && [[ ! -e $SO_WORK/stop-pinned ]]; do
    if PGPASSWORD=$so_app_pass PGCONNECT_TIMEOUT=1 timeout 2 ip netns exec "$1" psql -h "$2" -U app -d app -XAtq \
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
