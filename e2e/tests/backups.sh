#!/usr/bin/env bash
# The users' backup acceptance scenario (issue 5):
#   1. day-1 backup on the original primary;   2. switchover;
#   3. day-2 backup on the new primary;        4. failback;
#   5. day-4 backup;
#   6. `kubectl get backups.relevo.dev` lists exactly those 3 (full, incr, incr), all
#      Completed, each naming the primary it ran on, and Redis holds matching
#      hashes with DESIGN.md's field names and values.
# Then: a backup taken while Redis is down is recorded once Redis returns, and
# WAL archiving still succeeds after a failover.
source "$(dirname "$0")/../lib.sh"
[[ $RELEVO_CLUSTER != kind ]] || source "$E2E_DIR/faults.sh"
source "$E2E_DIR/switchover-lib.sh"
so_init relevo-e2e-backups || { summary backups; exit 1; }
ns=$so_ns
relevo=${RELEVO_BIN:-$("$REPO_ROOT/images/build.sh" --print-binary)}

if wait_for "the repo host ready (stanza created)" 180 \
    k -n "$ns" wait --for=condition=Ready pod/demo-repo-0 --timeout=5s; then
  pass "repo host demo-repo-0 ready"
else
  fail "repo host not ready: $(k -n "$ns" get pod demo-repo-0 -o jsonpath='{.status.conditions}' 2>&1)"
fi

rows() { PSQL_ROLE=superuser psql_to "$ns" demo-rw "$1"; }
rows "CREATE TABLE IF NOT EXISTS data(id serial primary key, payload text)"

# backup_day DAY EXPECTED_PRIMARY: `relevo backup --day`, then waits for it.
declare -A backup_of_day
backup_day() {
  local day=$1 primary=$2 out name phase
  rows "INSERT INTO data(payload) SELECT md5(g::text) FROM generate_series(1, 1000) g" >/dev/null
  out=$("$relevo" backup demo -n "$ns" --day "$day" 2>&1) || { fail "relevo backup --day $day: $out"; return; }
  name=$(sed -n 's|^backup.relevo.dev/\([^ ]*\) created.*|\1|p' <<<"$out" | tail -1)
  backup_of_day[$day]=$name
  if wait_for "$name finished" 240 bash -c "[[ \$(source '$E2E_DIR/lib.sh'; k -n $ns get backups.relevo.dev $name -o jsonpath='{.status.phase}') =~ ^(Completed|Failed)$ ]]"; then
    phase=$(k -n "$ns" get backups.relevo.dev "$name" -o jsonpath='{.status.phase}')
  fi
  if [[ ${phase:-} == Completed ]]; then
    pass "day $day: $name Completed ($(k -n "$ns" get backups.relevo.dev "$name" -o jsonpath='{.spec.type} on {.status.primary}, label {.status.label}, {.status.size}'))"
  else
    fail "day $day: $name ${phase:-not finished}: $(k -n "$ns" get backups.relevo.dev "$name" -o jsonpath='{.status.error}' 2>&1)"
  fi
  local used; used=$(k -n "$ns" get backups.relevo.dev "$name" -o jsonpath='{.status.primary}')
  [[ $used == "$primary" ]] && pass "day $day ran on the primary $primary" \
    || fail "day $day ran on '$used', the primary was $primary"
}

switch_to() {
  apply_switchover "$1" "$2"
  wait_for "$1 Completed" 120 bash -c "[[ \$(source '$E2E_DIR/lib.sh'; k -n $ns get switchovers.relevo.dev $1 -o jsonpath='{.status.phase}') == Completed ]]" \
    && wait_for "currentPrimary $2" 30 bash -c "[[ \$(source '$E2E_DIR/lib.sh'; k -n $ns get pgclusters.relevo.dev demo -o jsonpath='{.status.currentPrimary}') == $2 ]]" \
    && pass "switchover $1: $2 is the primary" || fail "switchover $1 to $2 did not complete"
}

backup_day 1 demo-1
switch_to to-demo-2 demo-2
backup_day 2 demo-2
switch_to back-to-demo-1 demo-1
backup_day 4 demo-1
expected_rows=$(rows "SELECT count(*) FROM data")

# 6. Exactly three Backups, as the table shows them.
listing=$(k -n "$ns" get backups.relevo.dev --no-headers -o custom-columns=T:.spec.type,D:.spec.cycleDay,P:.status.primary,PH:.status.phase \
  --sort-by=.metadata.creationTimestamp | tr -s ' ')
k -n "$ns" get backups.relevo.dev >&2
expected=$'full 1 demo-1 Completed\nincr 2 demo-2 Completed\nincr 4 demo-1 Completed'
[[ $listing == "$expected" ]] && pass "kubectl get backups.relevo.dev: day 1 full, day 2 incr, day 4 incr, each on its primary" \
  || fail "kubectl get backups.relevo.dev shows:"$'\n'"$listing"

# Redis: one hash per backup, DESIGN.md's fields and values.
redis_ip=$(k -n "$ns" get service demo-redis -o jsonpath='{.spec.clusterIP}')
redis_pass=$(k -n "$ns" get secret demo-redis -o jsonpath='{.data.password}' | base64 -d)
# relevo's Redis user (the managed Redis has its `default` user off).
redis_user=$(k -n "$ns" get secret demo-redis -o jsonpath='{.data.username}' | base64 -d)
rcli() { REDISCLI_AUTH=$redis_pass redis-cli -h "$redis_ip" --user "$redis_user" --no-auth-warning "$@"; }
check_record() {
  local name=$1 tipo=$2 primary=$3 key label
  label=$(k -n "$ns" get backups.relevo.dev "$name" -o jsonpath='{.status.label}')
  key=
  for k in $(rcli --scan --pattern 'backup:*'); do
    if [[ $(rcli hget "$k" label) == "$label" ]]; then key=$k; break; fi
  done
  if [[ -z $key ]]; then fail "no Redis hash for $name (label $label)"; return; fi
  local fecha hora
  fecha=$(rcli hget "$key" fecha); hora=$(rcli hget "$key" hora)
  if [[ $key == "backup:${fecha}_${hora//:/-}"* && $(rcli hget "$key" tipo_backup) == "$tipo" \
      && $(rcli hget "$key" maestro_usado) == "$primary" && $(rcli hget "$key" metodo) == pgBackRest \
      && $(rcli hget "$key" stanza) == demo && $(rcli hget "$key" direccion_almacenamiento) == *"$label"* ]]; then
    pass "Redis $key: tipo_backup=$tipo maestro_usado=$primary metodo=pgBackRest stanza=demo"
  else
    fail "Redis $key does not match $name:"$'\n'"$(rcli hgetall "$key")"
  fi
}
check_record "${backup_of_day[1]}" completo demo-1
check_record "${backup_of_day[2]}" incremental demo-2
check_record "${backup_of_day[4]}" incremental demo-1
n=$(rcli --scan --pattern 'backup:*' | wc -l)
((n == 3)) && pass "Redis holds exactly 3 backup hashes" || fail "Redis holds $n backup hashes"
out=$("$relevo" backups demo -n "$ns" 2>&1) && [[ $(grep -c completo <<<"$out") -ge 1 ]] \
  && pass "relevo backups lists them:"$'\n'"$out" || fail "relevo backups: $out"

# 6b. limpiar_backups.sh's question: a record whose backup the repository no longer has is an
# orphan. Plant one (a label pgBackRest never had) and one of the old scripts (no label, never
# touched), then prune: without a terminal and without --yes nothing goes; with --yes only the
# orphan does, and the three real records stay.
orphan=backup:2020-01-01_00-00-00 unlabelled=backup:2019-01-01_00-00-00
rcli hset "$orphan" fecha 2020-01-01 hora 00:00:00 tipo_backup completo label 20200101-000000F >/dev/null
rcli hset "$unlabelled" fecha 2019-01-01 hora 00:00:00 tipo_backup completo >/dev/null
rcli zadd "backups:$ns/demo" 1577836800 "$orphan" 1546300800 "$unlabelled" >/dev/null
if out=$("$relevo" backups demo -n "$ns" --prune-orphans </dev/null 2>&1); then
  fail "--prune-orphans without --yes and without a terminal deleted: $out"
elif [[ $out == *"$orphan"* && $out != *"$unlabelled"* && $(rcli exists "$orphan") == 1 ]]; then
  pass "--prune-orphans lists the orphan and, unanswered, deletes nothing"
else
  fail "--prune-orphans without --yes: $out"
fi
out=$("$relevo" backups demo -n "$ns" --prune-orphans --yes 2>&1)
if [[ $out == *"Deleted 1 orphan record"* && $(rcli exists "$orphan") == 0 \
    && $(rcli zscore "backups:$ns/demo" "$orphan") == "" && $(rcli exists "$unlabelled") == 1 \
    && $(rcli --scan --pattern 'backup:202*' | wc -l) == 3 ]]; then
  pass "--prune-orphans --yes deleted only the orphan (and its index entry):"$'\n'"$out"
else
  fail "--prune-orphans --yes: $out"$'\n'"$(rcli --scan --pattern 'backup:*')"
fi
rcli del "$unlabelled" >/dev/null; rcli zrem "backups:$ns/demo" "$unlabelled" >/dev/null

# 7. Restore the latest backup into a new PgCluster: the rows of the day-4 backup, a primary
# promoted by recovery, this cluster's own passwords, and a standby cloned from it.
k -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: relevo.dev/v1alpha1
kind: PgCluster
metadata: {name: restored}
spec:
  instances: 2
  storage: {size: 1Gi}
  bootstrap: {recovery: {source: demo}}
  redis: {managed: {}}
YAML
if k -n "$ns" wait --for=condition=Ready pgclusters.relevo.dev/restored --timeout=300s >/dev/null; then
  restored_rows=$(PSQL_ROLE=superuser psql_to "$ns" restored-rw "SELECT count(*) FROM data")
  if [[ $restored_rows == "$expected_rows" ]]; then
    pass "restored cluster Ready with $restored_rows rows, as many as the source at its day-4 backup"
  else
    fail "restored cluster has $restored_rows rows, the source had $expected_rows at the backup"
  fi
  # Ready is PostgreSQL's word (the standby streams); restored-ro answering also needs the
  # endpoint controller and kube-proxy to have caught up with the role label, which on two
  # loaded cores took over a second once (the CI run of 01e683b).
  standby_behind_ro() { [[ $(PSQL_ROLE=superuser psql_to "$ns" restored-ro "SELECT pg_is_in_recovery()") == t ]]; }
  if wait_for "a standby answering through restored-ro" 30 standby_behind_ro; then
    pass "the restored cluster's standby answers through restored-ro"
  else
    fail "no standby behind restored-ro: $(k -n "$ns" get endpointslices -l kubernetes.io/service-name=restored-ro -o wide 2>&1)"
  fi
else
  fail "restored cluster not Ready: $(k -n "$ns" get pgclusters.relevo.dev restored -o jsonpath='{.status.conditions}')"
  k -n "$ns" logs restored-1-0 -c postgres --tail=30 >&2 || true
fi

# Redis unavailable during a backup: the Backup completes, and its record is
# written once Redis answers again. (Scaling Redis to zero would be undone by the
# operator, which owns its Deployment; a stopped redis-server accepts connections
# and answers nothing, which the operator's 3 s timeouts treat as down. relevo's
# Redis user may not CLIENT PAUSE, so the process is stopped from its node.)
redis_pod=$(k -n "$ns" get pods -l relevo.dev/cluster=demo,app.kubernetes.io/component=redis -o jsonpath='{.items[0].metadata.name}')
container_signal "$ns" "$redis_pod" redis STOP
redis_gone() { [[ $(timeout 2 env REDISCLI_AUTH="$redis_pass" redis-cli -h "$redis_ip" --user "$redis_user" --no-auth-warning ping 2>&1) != PONG ]]; }
wait_for "Redis stopped" 30 redis_gone || fail "Redis still answers after SIGSTOP"
out=$("$relevo" backup demo -n "$ns" --type incr 2>&1)
down=$(sed -n 's|^backup.relevo.dev/\([^ ]*\) created.*|\1|p' <<<"$out" | tail -1)
if wait_for "$down Completed with Redis down" 110 bash -c "[[ \$(source '$E2E_DIR/lib.sh'; k -n $ns get backups.relevo.dev $down -o jsonpath='{.status.phase}/{.status.redisRecorded}') == Completed/false ]]"; then
  pass "$down Completed while Redis was unavailable (redisRecorded=false)"
else
  fail "$down: $(k -n "$ns" get backups.relevo.dev "$down" -o jsonpath='{.status.phase}/{.status.redisRecorded} {.status.error}')"
fi
container_signal "$ns" "$redis_pod" redis CONT
if wait_for "$down recorded after Redis returned" 300 bash -c "[[ \$(source '$E2E_DIR/lib.sh'; k -n $ns get backups.relevo.dev $down -o jsonpath='{.status.redisRecorded}') == true ]]"; then
  check_record "$down" incremental demo-1
else
  fail "$down never recorded in Redis after it returned"
fi

# WAL archiving after a failover: the new primary archives its segments.
prepare_unplanned
run_scenario "failover before checking archiving" unplanned_failover
so_allow_loss=0
new_primary=$(so_primary)
segment=$(rows "SELECT pg_walfile_name(pg_current_wal_lsn())")
rows "SELECT pg_switch_wal()" >/dev/null
archived() {
  [[ $(PSQL_ROLE=superuser psql_to "$ns" demo-rw "SELECT last_archived_wal >= '$segment' FROM pg_stat_archiver") == t ]]
}
if wait_for "segment $segment archived by $new_primary" 60 archived; then
  pass "after the failover, $new_primary archived $segment ($(rows "SELECT archived_count || ' archived, ' || failed_count || ' failed' FROM pg_stat_archiver"))"
else
  fail "after the failover, $segment not archived: $(rows "SELECT * FROM pg_stat_archiver")"
fi

summary backups
