#!/usr/bin/env bash
# The PgCluster story: apply the sample, get a Ready primary and standby that
# stream, write through -rw and read through -ro, then scale 2 -> 3 -> 2.
source "$(dirname "$0")/../lib.sh"
ns=relevo-e2e-cluster
k delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
k create namespace "$ns" >/dev/null

say "apply the sample PgCluster (2 instances)"
k -n "$ns" apply -f "$REPO_ROOT/manifests/samples/pgcluster.yaml" >/dev/null
start=$SECONDS
if k -n "$ns" wait --for=condition=Ready pgclusters.relevo.dev/demo --timeout=180s >/dev/null; then
  pass "PgCluster Ready in $((SECONDS - start))s"
else
  fail "PgCluster not Ready within 3 minutes"
  k -n "$ns" get pgclusters.relevo.dev demo -o yaml >&2; k -n "$ns" get pods -o wide >&2
  summary pgcluster; exit 1
fi

primary=$(k -n "$ns" get pgclusters.relevo.dev demo -o jsonpath='{.status.currentPrimary}')
[[ $primary == demo-1 ]] && pass "the first instance is the primary" || fail "currentPrimary is '$primary', want demo-1"
row=$(k -n "$ns" get pgclusters.relevo.dev --no-headers)
grep -q "demo-1" <<<"$row" && grep -q "True" <<<"$row" \
  && pass "kubectl get pgclusters.relevo.dev shows the primary and readiness: $row" \
  || fail "kubectl get pgclusters.relevo.dev row lacks primary or readiness: $row"
roles=$(k -n "$ns" get pods -l relevo.dev/cluster=demo,relevo.dev/instance -L relevo.dev/role --no-headers | awk '{print $1"="$NF}' | sort | xargs)
[[ $roles == "demo-1-0=primary demo-2-0=standby" ]] && pass "pods labelled by role: $roles" || fail "pod roles: $roles"

token="e2e-$RANDOM-$RANDOM"
psql_to "$ns" demo-rw "CREATE TABLE IF NOT EXISTS story(id serial primary key, token text); INSERT INTO story(token) VALUES ('$token')"
if wait_for "the row on the standby through demo-ro" 30 bash -c "[[ \$(source '$E2E_DIR/lib.sh'; psql_to $ns demo-ro \"SELECT count(*) FROM story WHERE token='$token'\") == 1 ]]"; then
  pass "a row written through demo-rw is read back through demo-ro"
else
  fail "the row written through demo-rw never reached demo-ro"
fi
ro_recovery=$(psql_to "$ns" demo-ro "SELECT pg_is_in_recovery()")
[[ $ro_recovery == t ]] && pass "demo-ro answers from a standby" || fail "demo-ro answered from a primary"

say "TLS: every connection encrypted, plain text refused"
ip=$(k -n "$ns" get service demo-rw -o jsonpath='{.spec.clusterIP}')
password=$(k -n "$ns" get secret demo-app -o jsonpath='{.data.password}' | base64 -d)
plain=$(PGPASSWORD=$password PGCONNECT_TIMEOUT=3 psql "host=$ip port=5432 user=app dbname=app sslmode=disable" -XAtq -c 'SELECT 1' 2>&1) \
  && fail "a plain-text connection was accepted" \
  || { grep -q "no encryption" <<<"$plain" && pass "a plain-text connection is refused by pg_hba" || fail "plain text refused for another reason: $plain"; }
wrong=$(PGPASSWORD=$password PGCONNECT_TIMEOUT=3 psql "host=other-rw.$ns.svc hostaddr=$ip port=5432 user=app dbname=app sslmode=verify-full sslrootcert=$(cluster_ca "$ns" demo)" -XAtq -c 'SELECT 1' 2>&1) \
  && fail "verify-full accepted a name the certificate lacks" \
  || { grep -q "does not match host name" <<<"$wrong" && pass "verify-full refuses a name the certificate lacks" || fail "wrong name refused for another reason: $wrong"; }
ssl_check() {
  PSQL_ROLE=superuser psql_to "$1" "$2" "SELECT count(*) FILTER (WHERE s.ssl) || '/' || count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.client_addr IS NOT NULL"
}
replication=$(PSQL_ROLE=superuser psql_to "$ns" demo-rw "SELECT count(*) FILTER (WHERE s.ssl) || '/' || count(*) FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)")
[[ $replication == 1/1 ]] && pass "the replication connection is TLS (pg_stat_ssl: $replication)" || fail "replication connections over TLS/all: $replication"
for service in demo-rw demo-ro; do
  counts=$(ssl_check "$ns" "$service")
  [[ ${counts%/*} == "${counts#*/}" && ${counts#*/} -ge 1 ]] \
    && pass "every TCP connection of $service's instance is TLS (pg_stat_ssl: $counts)" \
    || fail "TCP connections over TLS/all on $service: $counts"
done
receiver=$(PSQL_ROLE=superuser psql_to "$ns" demo-ro "SELECT conninfo FROM pg_stat_wal_receiver")
[[ $receiver == *sslmode=verify-full* ]] && pass "the standby streams with sslmode=verify-full" || fail "standby conninfo: $receiver"

instance_count() { k -n "$ns" get pgclusters.relevo.dev demo -o jsonpath='{range .status.instances[*]}{.name}{" "}{.ready}{"\n"}{end}' | grep -c ' true$'; }
say "scale to 3 instances"
k -n "$ns" patch pgclusters.relevo.dev demo --type merge -p '{"spec":{"instances":3}}' >/dev/null
if wait_for "3 ready instances" 180 bash -c "[[ \$(source '$E2E_DIR/lib.sh'; k -n $ns get pgclusters.relevo.dev demo -o jsonpath='{range .status.instances[*]}{.ready}{\" \"}{end}') == 'true true true ' ]]"; then
  pass "scaled up to 3 ready instances"
  count=$(PSQL_ROLE=superuser psql_to "$ns" demo-rw "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
  [[ $count == 2 ]] && pass "the primary streams to 2 standbys" || fail "the primary streams to $count standbys, want 2"
else
  fail "did not reach 3 ready instances"
fi
say "scale back to 2 instances"
k -n "$ns" patch pgclusters.relevo.dev demo --type merge -p '{"spec":{"instances":2}}' >/dev/null
if wait_for "2 instances, demo-3 gone" 120 bash -c "[[ \$(source '$E2E_DIR/lib.sh'; k -n $ns get pgclusters.relevo.dev demo -o jsonpath='{range .status.instances[*]}{.name}{\" \"}{end}') == 'demo-1 demo-2 ' ]] && ! (source '$E2E_DIR/lib.sh'; k -n $ns get statefulset demo-3 >/dev/null 2>&1)"; then
  pass "scaled down to 2 instances"
  slots=$(psql_to "$ns" demo-rw "SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots")
  [[ $slots != *demo_3* ]] && pass "the removed standby's slot is gone (slots: $slots)" || fail "slot of demo-3 remains: $slots"
else
  fail "did not scale down to 2 instances"
fi

# Volumes. The test bed's StorageClass does not allow expansion: a larger size leaves the
# claims as they are and makes the cluster Degraded with the API server's answer, every
# StatefulSet apply still succeeds, and setting the size back clears it. Another
# StorageClass is refused at apply.
say "volumes"
degraded_row() { k -n "$ns" get pgclusters.relevo.dev demo -o jsonpath='{.status.conditions[?(@.type=="Degraded")].status} {.status.conditions[?(@.type=="Degraded")].reason}: {.status.conditions[?(@.type=="Degraded")].message}'; }
k -n "$ns" patch pgclusters.relevo.dev demo --type merge -p '{"spec":{"storage":{"size":"2Gi"}}}' >/dev/null
# degraded_is PREFIX: the Degraded row starts with PREFIX.
degraded_is() { [[ $(degraded_row) == "$1"* ]]; }
if wait_for "Degraded VolumeExpansionRefused" 60 degraded_is "True VolumeExpansionRefused:"; then
  row=$(degraded_row)
  [[ $row == *spec.storage.size*pgdata-demo-1-0* || $row == *spec.storage.size*pgdata-demo-2-0* ]] \
    && pass "a larger size on a StorageClass without expansion: Degraded, ${row#True }" \
    || fail "the refusal does not name the field and the claim: $row"
else
  fail "a larger size on a StorageClass without expansion: not Degraded within 60 s: $(degraded_row)"
fi
sizes=$(k -n "$ns" get pvc pgdata-demo-1-0 pgdata-demo-2-0 -o jsonpath='{range .items[*]}{.spec.resources.requests.storage}{" "}{end}')
[[ $sizes == "1Gi 1Gi " ]] && pass "the claims are unchanged ($sizes)" || fail "the claims request: $sizes"
k -n "$ns" patch pgclusters.relevo.dev demo --type merge -p '{"spec":{"storage":{"size":"1Gi"}}}' >/dev/null
if wait_for "Degraded False" 60 degraded_is False; then
  pass "the size set back: no longer Degraded"
else
  fail "the size set back: still $(degraded_row)"
fi
out=$(k -n "$ns" patch pgclusters.relevo.dev demo --type merge -p '{"spec":{"storage":{"storageClass":"other"}}}' 2>&1) \
  && fail "another StorageClass was accepted: $out" \
  || { [[ $out == *spec.storage.storageClass*immutable* ]] && pass "another StorageClass is refused at apply: ${out##*: }" || fail "another StorageClass refused for another reason: $out"; }

say "deletion protection"
k -n "$ns" annotate pgclusters.relevo.dev demo relevo.dev/deletion-protection=true >/dev/null
if out=$(k -n "$ns" delete pgclusters.relevo.dev demo --wait=false 2>&1); then
  fail "a PgCluster annotated relevo.dev/deletion-protection=true was deleted: $out"
elif [[ $out == *deletion-protection* ]] && k -n "$ns" get pgclusters.relevo.dev demo >/dev/null \
    && [[ -z $(k -n "$ns" get pgclusters.relevo.dev demo -o jsonpath='{.metadata.deletionTimestamp}') ]]; then
  pass "a protected PgCluster's DELETE is refused and changes nothing: $out"
else
  fail "a protected PgCluster's DELETE: $out"
fi
k -n "$ns" annotate pgclusters.relevo.dev demo relevo.dev/deletion-protection- >/dev/null
if k -n "$ns" delete pgclusters.relevo.dev demo --wait=true --timeout=120s >/dev/null; then
  pass "without the annotation the PgCluster is deleted"
else
  fail "the PgCluster was not deleted once its annotation was removed"
fi

k delete namespace "$ns" --wait=false >/dev/null
summary pgcluster
