#!/usr/bin/env bash
# Every invalid PgCluster in e2e/fixtures/invalid-pgclusters is refused by
# `kubectl apply` with a message naming its field, and nothing is created. A
# spec only the operator can judge ends Degraded with a reason, without a hot loop.
source "$(dirname "$0")/../lib.sh"
ns=relevo-bad-input
k create namespace "$ns" --dry-run=client -o yaml | k apply -f - >/dev/null

for fixture in "$E2E_DIR"/fixtures/invalid-pgclusters/*.yaml; do
  name=$(basename "$fixture" .yaml)
  field=$(sed -n 's/^# expect: *//p' "$fixture")
  if out=$(k -n "$ns" apply -f "$fixture" 2>&1); then
    fail "$name: accepted; want a rejection naming $field"
  elif grep -qF "$field" <<<"$out"; then
    pass "$name: rejected, naming $field"
  else
    fail "$name: rejected without naming $field: $out"
  fi
done
left=$(k -n "$ns" get pgclusters.relevo.dev -o name)
if [[ -z $left ]]; then pass "no PgCluster was created"; else fail "created: $left"; fi
# A spec the schema accepts but the operator refuses: a parameter it owns.
reconciles() {
  local ip
  # The leader's own address: the Service's may answer from the standby replica.
  ip=$(k -n relevo-system get pod "$(operator_leader)" -o jsonpath='{.status.podIP}')
  curl -fsS "http://$ip:8080/metrics" | awk '/^relevo_reconciles_total\{controller="pgcluster"/ {n += $2} END {print n + 0}'
}
k -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: relevo.dev/v1alpha1
kind: PgCluster
metadata: {name: owned-parameter}
spec:
  instances: 1
  postgresql: {parameters: {wal_level: minimal}}
  redis: {managed: {}}
YAML
if k -n "$ns" wait --for=condition=Degraded pgclusters.relevo.dev/owned-parameter --timeout=60s >/dev/null; then
  reason=$(k -n "$ns" get pgclusters.relevo.dev owned-parameter -o jsonpath='{.status.conditions[?(@.type=="Degraded")].reason}: {.status.conditions[?(@.type=="Degraded")].message}')
  grep -q wal_level <<<"$reason" && pass "operator-refused spec: Degraded, $reason" || fail "Degraded without naming wal_level: $reason"
  built=$(k -n "$ns" get statefulsets -o name)
  [[ -z $built ]] && pass "the refused spec built nothing" || fail "the refused spec built: $built"
  before=$(reconciles); sleep 10; after=$(reconciles)
  ((after - before <= 3)) && pass "no hot loop: $((after - before)) reconciles in 10s" \
    || fail "hot loop: $((after - before)) reconciles in 10s"
else
  fail "operator-refused spec never became Degraded"
  k -n "$ns" get pgclusters.relevo.dev owned-parameter -o yaml >&2
fi

# Specs that only fail once pods run: a StorageClass that does not exist (the pod stays
# Pending) and a parameter value PostgreSQL refuses (it crash-loops). Each must be Degraded
# within 60 s, with what `kubectl describe` would say: the scheduler's message, and
# PostgreSQL's own error line.
failing_cluster() {
  k -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: relevo.dev/v1alpha1
kind: PgCluster
metadata: {name: $1}
spec:
  instances: 1
  $2
  redis: {managed: {}}
YAML
}
failing_cluster no-such-class 'storage: {size: 1Gi, storageClass: no-such-class}'
failing_cluster bad-value 'postgresql: {parameters: {shared_buffers: lots}}'
applied_at=$SECONDS
degraded_of() { k -n "$ns" get pgclusters.relevo.dev "$1" -o jsonpath='{.status.conditions[?(@.type=="Degraded")].status} {.status.conditions[?(@.type=="Degraded")].reason}: {.status.conditions[?(@.type=="Degraded")].message}'; }
# failing_is CLUSTER TEXT: Degraded True, InstancesFailing, and the message holds TEXT.
failing_is() { local row; row=$(degraded_of "$1"); [[ $row == "True InstancesFailing:"* && $row == *"$2"* ]]; }
# The scheduler names the unbound claim, not the StorageClass (its events do).
for case in 'no-such-class|not scheduled: 0/' 'bad-value|invalid value for parameter "shared_buffers": "lots"'; do
  name=${case%%|*} text=${case#*|}
  if wait_for "$name Degraded" 75 failing_is "$name" "$text"; then
    took=$((SECONDS - applied_at))
    ((took <= 60)) || took="$took (TARGET MISSED: more than 60)"
    pass "$name: Degraded $took s after apply: $(degraded_of "$name" | cut -c1-300)"
  else
    fail "$name: not Degraded with '$text' within 75 s: $(degraded_of "$name")"
  fi
done

k delete namespace "$ns" --wait=false >/dev/null
summary bad-input
