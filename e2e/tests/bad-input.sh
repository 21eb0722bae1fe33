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

k delete namespace "$ns" --wait=false >/dev/null
summary bad-input
