#!/usr/bin/env bash
# A BackupSchedule runs one whole 6-day cycle with a short dayLength, on a
# cluster of its own (retention applies to every backup of a cluster):
#   - the Backups it creates have the table's types and days, in order;
#   - they all complete, on the primary;
#   - with retention full=1, the day-6 full expires the first chain: those
#     Backups become Expired and their Redis hashes go;
#   - bad schedules are refused by `kubectl apply`, naming the field.
source "$(dirname "$0")/../lib.sh"
ns=relevo-e2e-schedule
day=${SCHEDULE_DAY_LENGTH:-40s}
k delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
k create namespace "$ns" >/dev/null
trap 'k delete namespace "$ns" --wait=false >/dev/null 2>&1' EXIT

sed 's/^  instances: 2$/  instances: 1/' "$REPO_ROOT/manifests/samples/pgcluster.yaml" | k -n "$ns" apply -f - >/dev/null
if ! k -n "$ns" wait --for=condition=Ready pgclusters.relevo.dev/demo --timeout=180s >/dev/null \
    || ! wait_for "the repo host ready" 180 k -n "$ns" wait --for=condition=Ready pod/demo-repo-0 --timeout=5s; then
  fail "cluster or repo host not ready"; summary schedule; exit 1
fi
PSQL_ROLE=superuser psql_to "$ns" demo-rw "CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g" >/dev/null

# Bad input first: refused, nothing created.
refused() {
  local field=$1 out; shift
  if out=$(k -n "$ns" apply -f - 2>&1 <<YAML
apiVersion: relevo.dev/v1alpha1
kind: BackupSchedule
metadata: {name: bad}
spec: {cluster: demo, $*}
YAML
  ); then
    fail "accepted a BackupSchedule with $*"
  elif [[ $out == *"$field"* ]]; then
    pass "refused ($*): ${out##*: }"
  else
    fail "refused ($*) without naming $field: $out"
  fi
}
refused spec.schedule 'schedule: "61 2 * * *"'
refused spec.timeZone 'schedule: "0 1 * * *", timeZone: Europe/Madird'
refused spec.dayLength 'dayLength: 5s'

k -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: relevo.dev/v1alpha1
kind: BackupSchedule
metadata: {name: cycle}
spec: {cluster: demo, dayLength: $day, retention: {full: 1}}
YAML
say "BackupSchedule cycle: one day every $day"

# The whole cycle: 9 Backups, the last being day 6's full, Completed.
expected=$'full 1\nincr 2\nincr 3\ndiff 3\nincr 4\nincr 5\ndiff 5\ndiff 6\nfull 6'
listing() {
  k -n "$ns" get backups.relevo.dev --sort-by=.metadata.creationTimestamp --no-headers \
    -o custom-columns=T:.spec.type,D:.spec.cycleDay,S:.spec.schedule,P:.status.phase | tr -s ' '
}
cycle_done() {
  local rows; rows=$(listing)
  echo "$rows"
  (($(wc -l <<<"$rows") >= 9)) && [[ $(sed -n 9p <<<"$rows") == "full 6 cycle Completed" ]]
}
if wait_for "the day-6 full of the cycle" 600 cycle_done; then
  pass "the schedule ran a whole cycle"
else
  fail "the cycle did not finish: $(listing | tr '\n' ';')"
fi
rows=$(listing)
rows=$(head -9 <<<"$rows")
[[ $(awk '{print $1, $2}' <<<"$rows") == "$expected" ]] \
  && pass "types and days in the table's order: $(awk '{printf "%s%s ", substr($1,1,1), $2}' <<<"$rows")" \
  || fail "types and days:"$'\n'"$rows"
primaries=$(k -n "$ns" get backups.relevo.dev -o jsonpath='{range .items[*]}{.status.primary}{"\n"}{end}' | sort -u | tr '\n' ' ')
[[ $primaries == "demo-1 " ]] && pass "every backup ran on the primary demo-1" || fail "primaries used: $primaries"

# Retention full=1: once day 6's full is in, the first chain is expired.
expired_first_eight() {
  local rows
  rows=$(listing) || return 1
  [[ $(head -8 <<<"$rows" | awk '$4 == "Expired"' | wc -l) == 8 ]]
}
if wait_for "the first chain Expired" 60 expired_first_eight; then
  pass "retention (full=1): the 8 Backups before day 6's full are Expired"
else
  fail "retention: $(listing | tr '\n' ';')"
fi
redis_ip=$(k -n "$ns" get service demo-redis -o jsonpath='{.spec.clusterIP}')
redis_pass=$(k -n "$ns" get secret demo-redis -o jsonpath='{.data.password}' | base64 -d)
# relevo's Redis user (the managed Redis has its `default` user off).
redis_user=$(k -n "$ns" get secret demo-redis -o jsonpath='{.data.username}' | base64 -d)
hashes() { REDISCLI_AUTH=$redis_pass redis-cli -h "$redis_ip" --user "$redis_user" --no-auth-warning --scan --pattern 'backup:*' | wc -l; }
one_hash() { [[ $(hashes) == 1 ]]; }
if wait_for "one Redis hash left" 60 one_hash; then
  pass "Redis keeps only the live backup's hash"
else
  fail "Redis holds $(hashes) backup hashes after retention"
fi
k -n "$ns" get backupschedules.relevo.dev cycle >&2
k -n "$ns" patch backupschedules.relevo.dev cycle --type merge -p '{"spec":{"suspend":true}}' >/dev/null
suspended() { [[ $(k -n "$ns" get backupschedules.relevo.dev cycle -o jsonpath='{.status.conditions[?(@.type=="Ready")].reason}') == Suspended ]]; }
wait_for "the schedule suspended" 30 suspended && pass "suspend: Ready reason Suspended" || fail "suspend not reported"

summary schedule
