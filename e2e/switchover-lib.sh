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
  if ! k -n "$so_ns" wait --for=condition=Ready pgcluster/demo --timeout=180s >/dev/null; then
    fail "PgCluster demo not Ready in 180s: $(k -n "$so_ns" get pgcluster demo -o jsonpath='{.status.conditions}')"
    return 1
  fi
  psql_to "$so_ns" demo-rw "CREATE TABLE IF NOT EXISTS load(id int primary key, at timestamptz default now())"
  so_su_pass=$(so_secret superuser password)
  so_app_pass=$(so_secret app password)
  so_rw_ip=$(k -n "$so_ns" get service demo-rw -o jsonpath='{.spec.clusterIP}')
  so_scenarios=0
}

so_cleanup() {
  touch "$SO_WORK/stop"
  wait
  k uncordon "$(so_node)" >/dev/null 2>&1 || true
  k delete namespace "$so_ns" --wait=false >/dev/null 2>&1 || true
}

so_secret() { k -n "$so_ns" get secret "demo-$1" -o jsonpath="{.data.$2}" | base64 -d; }
so_node() { k get nodes -o jsonpath='{.items[0].metadata.name}'; }
so_primary() { k -n "$so_ns" get pgcluster demo -o jsonpath='{.status.currentPrimary}'; }
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
switchover_phase() { k -n "$so_ns" get switchover "$1" -o jsonpath='{.status.phase}' 2>/dev/null; }

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
  if wait_for "$switchover Completed" 240 bash -c "[[ \$(source '$E2E_DIR/lib.sh'; k -n $so_ns get switchover $switchover -o jsonpath='{.status.phase}') =~ ^(Completed|Failed)$ ]]" \
      && phase=$(switchover_phase "$switchover") && [[ $phase == Completed ]]; then
    pass "$name: $switchover Completed ($(k -n "$so_ns" get switchover "$switchover" -o jsonpath='{.status.from} -> {.status.to} in {.status.durationSeconds}s'))"
  else
    fail "$name: $switchover did not complete: $(k -n "$so_ns" get switchover "$switchover" -o jsonpath='{.status.phase}: {.status.reason}' 2>&1)"
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
  FIG_COMPLETED=$(k -n "$so_ns" get switchover "$switchover" -o jsonpath='{.status.durationSeconds}')
  say "$name: longest write gap ${FIG_GAP}s, writable after ${FIG_WRITABLE}s, Completed in ${FIG_COMPLETED}s"
  say "$name: phases $(k -n "$so_ns" get switchover "$switchover" \
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
  switchover=
  if wait_for "a Failover Switchover after $lost was lost" 60 failover_exists; then
    switchover=$(failover_exists)
    seen_failovers+=("$switchover")
    wait_for "$switchover promoting a standby" 60 bash -c \
      "[[ \$(source '$E2E_DIR/lib.sh'; k -n $so_ns get switchover $switchover -o jsonpath='{.status.phase}') =~ ^(Rebuilding|Completed|Failed)$ ]]" || true
  else
    switchover=none
  fi
  k uncordon "$node" >/dev/null
}

# failover_exists: prints the newest Failover Switchover created after the
# previous ones, failing when there is none.
failover_exists() {
  local name
  name=$(k -n "$so_ns" get switchovers --sort-by=.metadata.creationTimestamp \
    -o jsonpath='{range .items[?(@.spec.mode=="Failover")]}{.metadata.name}{"\n"}{end}' \
    | grep -vxF -f <(printf '%s\n' "${seen_failovers[@]:-}") | tail -1)
  [[ -n $name ]] && echo "$name"
}
seen_failovers=()
