#!/usr/bin/env bash
# The switchover story, under write load: planned A -> B, failback B -> A, and
# an unplanned failover when the primary's pod is deleted. A writer inserts a
# numbered row through demo-rw every ~50 ms and logs which were acknowledged; a
# watcher polls every instance for pg_is_in_recovery() throughout. After each:
# every acknowledged row exists, never two primaries, the old primary streams
# again, and the Switchover reached Completed.
source "$(dirname "$0")/../lib.sh"
ns=relevo-e2e-switchover
work=$(mktemp -d)
k delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
k create namespace "$ns" >/dev/null
trap 'touch "$work/stop"; wait; k delete namespace "$ns" --wait=false >/dev/null 2>&1' EXIT

k -n "$ns" apply -f "$REPO_ROOT/manifests/samples/pgcluster.yaml" >/dev/null
k -n "$ns" wait --for=condition=Ready pgcluster/demo --timeout=180s >/dev/null || {
  fail "PgCluster not Ready"; summary switchover; exit 1; }
psql_to "$ns" demo-rw "CREATE TABLE IF NOT EXISTS load(id int primary key, at timestamptz default now())"

secret() { k -n "$ns" get secret "demo-$1" -o jsonpath="{.data.$2}" | base64 -d; }
su_pass=$(secret superuser password)
app_pass=$(secret app password)
rw_ip=$(k -n "$ns" get service demo-rw -o jsonpath='{.spec.clusterIP}')

# writer FIRST COUNT: inserts rows FIRST.. one by one, at most COUNT or until
# $work/stop exists, logging each acknowledged id.
writer() {
  local id=$1 last=$(($1 + $2))
  while ((id < last)) && [[ ! -e $work/stop ]]; do
    if PGPASSWORD=$app_pass PGCONNECT_TIMEOUT=1 psql -h "$rw_ip" -U app -d app -XAtq \
        -c "INSERT INTO load(id) VALUES ($id)" >/dev/null 2>&1; then
      echo "$id $(date +%s.%N)" >>"$work/acked"
    else
      echo "$id $(date +%s.%N)" >>"$work/refused"
    fi
    id=$((id + 1)); sleep 0.05
  done
}

# watcher: every ~200 ms, which instances are out of recovery (by pod IP).
watcher() {
  local n=0
  while [[ ! -e $work/stop ]] && ((n < 3000)); do
    local primaries=()
    for pod in $(k -n "$ns" get pods -l relevo.dev/cluster=demo,relevo.dev/instance -o jsonpath='{range .items[*]}{.metadata.name}={.status.podIP}{" "}{end}' 2>/dev/null); do
      [[ ${pod#*=} ]] || continue
      r=$(PGPASSWORD=$su_pass PGCONNECT_TIMEOUT=1 psql -h "${pod#*=}" -U postgres -d postgres -XAtq -c "SELECT pg_is_in_recovery()" 2>/dev/null) || continue
      [[ $r == f ]] && primaries+=("${pod%%=*}")
    done
    echo "$(date +%s.%N) ${#primaries[@]} ${primaries[*]}" >>"$work/roles"
    n=$((n + 1)); sleep 0.2
  done
}

# scenario NAME ACTION...: runs ACTION under load and checks the invariants.
# Sets $switchover to the Switchover that carried it out.
scenario() {
  local name=$1; shift
  rm -f "$work/stop"
  : >"$work/acked"; : >"$work/refused"; : >"$work/roles"
  scenarios=$((${scenarios:-0} + 1))
  local first=$((scenarios * 10000))
  writer "$first" 1200 & local writer_pid=$!
  watcher & local watcher_pid=$!
  sleep 1
  local old_primary
  old_primary=$(k -n "$ns" get pgcluster demo -o jsonpath='{.status.currentPrimary}')
  "$@"
  if k -n "$ns" wait --for=jsonpath='{.status.phase}'=Completed "switchover/$switchover" --timeout=180s >/dev/null; then
    pass "$name: $switchover Completed ($(k -n "$ns" get switchover "$switchover" -o jsonpath='{.status.from} -> {.status.to} in {.status.durationSeconds}s'))"
  else
    fail "$name: $switchover did not complete: $(k -n "$ns" get switchover "$switchover" -o jsonpath='{.status.phase}: {.status.reason}')"
  fi
  sleep 2
  touch "$work/stop"; wait "$writer_pid" "$watcher_pid"

  local acked missing two
  acked=$(wc -l <"$work/acked")
  awk '{print $1}' "$work/acked" | sort >"$work/acked-ids"
  PSQL_ROLE=superuser psql_to "$ns" demo-rw \
    "SELECT id FROM load WHERE id >= $first AND id < $((first + 1200))" | sort >"$work/stored"
  missing=$(comm -23 "$work/acked-ids" "$work/stored" | wc -l)
  ((acked > 0 && missing == 0)) && pass "$name: all $acked acknowledged rows present" \
    || fail "$name: $missing of $acked acknowledged rows missing"
  two=$(awk '$2 > 1' "$work/roles" | head -1)
  [[ -z $two ]] && pass "$name: never two primaries ($(wc -l <"$work/roles") polls)" || fail "$name: two primaries at once: $two"
  local refused_window
  # The write-unavailable window: from the first refused insert to the first
  # acknowledged one after it.
  refused_window=$(awk 'NR == FNR {if (!s) s = $2; next} s && $2 > s && !e {e = $2} END {if (s && e) printf "%.2f", e - s; else print 0}' "$work/refused" "$work/acked")
  say "$name: write-unavailable window ${refused_window}s ($(wc -l <"$work/refused") refused inserts)"
  if wait_for "$old_primary streaming from the new primary" 120 bash -c \
      "[[ \$(source '$E2E_DIR/lib.sh'; PSQL_ROLE=superuser psql_to $ns demo-rw \"SELECT count(*) FROM pg_stat_replication WHERE application_name = '$old_primary' AND state = 'streaming'\") == 1 ]]"; then
    pass "$name: $old_primary streams again"
  else
    fail "$name: $old_primary does not stream from the new primary"
  fi
}

planned() {
  switchover=$1
  k -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: relevo.dev/v1alpha1
kind: Switchover
metadata: {name: $1}
spec: {cluster: demo, targetInstance: $2, mode: Planned}
YAML
}
scenario "planned demo-1 -> demo-2" planned demo-switchover-1 demo-2
primary=$(k -n "$ns" get pgcluster demo -o jsonpath='{.status.currentPrimary}')
[[ $primary == demo-2 ]] && pass "currentPrimary is demo-2" || fail "currentPrimary is $primary after the switchover"

scenario "failback demo-2 -> demo-1" planned demo-switchover-2 demo-1
primary=$(k -n "$ns" get pgcluster demo -o jsonpath='{.status.currentPrimary}')
[[ $primary == demo-1 ]] && pass "currentPrimary is demo-1 again" || fail "currentPrimary is $primary after failback"

kill_primary() {
  k -n "$ns" delete pod demo-1-0 --wait=false >/dev/null
  wait_for "a Failover Switchover" 60 bash -c "[[ -n \$(source '$E2E_DIR/lib.sh'; k -n $ns get switchovers -o jsonpath='{.items[?(@.spec.mode==\"Failover\")].metadata.name}') ]]" || return 0
  switchover=$(k -n "$ns" get switchovers -o jsonpath='{.items[?(@.spec.mode=="Failover")].metadata.name}')
}
switchover=none
scenario "unplanned: primary pod deleted" kill_primary
k -n "$ns" get switchovers >&2

summary switchover
