#!/usr/bin/env bash
# The namespaced install: `kubectl apply -k manifests/namespaced/` in place of the
# cluster-wide binding. The operator must run a PgCluster in its namespace (relevo-apps)
# and leave one elsewhere alone, with RBAC that refuses it anything there. The
# cluster-wide install is put back at the end, whatever happened.
source "$(dirname "$0")/../lib.sh"
inside=relevo-apps
outside=relevo-e2e-outside
operator_sa=system:serviceaccount:relevo-system:relevo-operator

restore_cluster_wide() {
  say "putting the cluster-wide install back"
  k apply -k "$REPO_ROOT/manifests" >/dev/null
  k -n "$inside" delete rolebinding relevo-operator --ignore-not-found >/dev/null
  k -n relevo-system delete rolebinding relevo-operator --ignore-not-found >/dev/null
  k delete namespace "$inside" "$outside" --ignore-not-found --wait=false >/dev/null
  k -n relevo-system rollout status deployment/relevo-operator --timeout=180s >/dev/null
}
trap restore_cluster_wide EXIT

k delete namespace "$outside" --ignore-not-found --wait=true >/dev/null
k create namespace "$outside" >/dev/null
say "switching to the namespaced install (watching $inside only)"
# The RoleBindings first, and the cluster-wide binding only once the namespaced pods have
# replaced the old ones: an operator pod is never left running without its rights.
k apply -k "$REPO_ROOT/manifests/namespaced" >/dev/null
if k -n relevo-system rollout status deployment/relevo-operator --timeout=180s >/dev/null; then
  pass "the operator runs with the namespaced install"
else
  fail "the namespaced operator did not roll out"; summary namespaced; exit 1
fi
k delete clusterrolebinding relevo-operator --ignore-not-found >/dev/null
watched=$(k -n relevo-system get deployment relevo-operator \
  -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="RELEVO_WATCH_NAMESPACE")].value}')
[[ $watched == "$inside" ]] && pass "RELEVO_WATCH_NAMESPACE=$watched" || fail "RELEVO_WATCH_NAMESPACE is '$watched'"

# `kubectl auth can-i` exits 1 for "no".
can() { k auth can-i "$@" --as="$operator_sa" 2>/dev/null || true; }
[[ $(can create statefulsets -n "$inside") == yes ]] && pass "the operator may create StatefulSets in $inside" \
  || fail "the operator may not create StatefulSets in $inside"
for verb_resource in "create statefulsets" "get secrets" "list pgclusters.relevo.dev"; do
  # shellcheck disable=SC2086
  answer=$(can $verb_resource -n "$outside")
  [[ $answer == no ]] && pass "refused in $outside: $verb_resource" || fail "allowed in $outside: $verb_resource ($answer)"
done

cluster='{"apiVersion":"relevo.dev/v1alpha1","kind":"PgCluster","metadata":{"name":"solo"},"spec":{"instances":1}}'
# The one outside first: by the time the inside one is Ready, a cluster-wide operator would
# long have given it a status.
k -n "$outside" apply -f - <<<"$cluster" >/dev/null
k -n "$inside" apply -f - <<<"$cluster" >/dev/null
start=$SECONDS
if k -n "$inside" wait --for=condition=Ready pgclusters.relevo.dev/solo --timeout=240s >/dev/null; then
  pass "a PgCluster in $inside is Ready in $((SECONDS - start))s"
else
  fail "the PgCluster in $inside is not Ready: $(k -n "$inside" get pgclusters.relevo.dev solo -o jsonpath='{.status.conditions}')"
  k -n "$inside" get pods -o wide >&2
fi
# A change to each, outside first: once the operator has taken in the inside change
# (status.observedGeneration), it would have seen the outside one too, if it could.
delay='{"spec":{"failover":{"delay":"45s"}}}'
k -n "$outside" patch pgclusters.relevo.dev solo --type=merge -p "$delay" >/dev/null
k -n "$inside" patch pgclusters.relevo.dev solo --type=merge -p "$delay" >/dev/null
generation=$(k -n "$inside" get pgclusters.relevo.dev solo -o jsonpath='{.metadata.generation}')
wait_for "the operator to take in the change in $inside" 60 bash -c \
  "[[ \$(source '$E2E_DIR/lib.sh'; k -n $inside get pgclusters.relevo.dev solo -o jsonpath='{.status.observedGeneration}') == $generation ]]" \
  || fail "the operator did not take in generation $generation of the PgCluster in $inside"
status=$(k -n "$outside" get pgclusters.relevo.dev solo -o jsonpath='{.status}')
children=$(k -n "$outside" get statefulsets,services,secrets -l relevo.dev/cluster=solo --no-headers 2>/dev/null | wc -l)
if [[ -z $status && $children == 0 ]]; then
  pass "the PgCluster in $outside is left alone: no status, no children, $((SECONDS - start))s after it was applied"
else
  fail "the PgCluster in $outside was acted on: status '$status', $children children"
fi
forbidden=$(operator_logs --since=5m 2>/dev/null | grep -c -i forbidden || true)
[[ $forbidden == 0 ]] && pass "no 'forbidden' in the leading operator's log" \
  || fail "$forbidden 'forbidden' lines in the operator's log: $(operator_logs --since=5m | grep -i -m3 forbidden)"

k -n "$inside" delete pgclusters.relevo.dev solo --wait=true --timeout=120s >/dev/null \
  || fail "deleting the PgCluster in $inside"
summary namespaced
