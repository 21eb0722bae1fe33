#!/usr/bin/env bash
# Smoke test of a running cluster (the host-mode bed or kind, as RELEVO_CLUSTER
# says), through every part a pod depends on: scheduling, the kubelet,
# containerd, the pod network between nodes, kube-proxy, cluster DNS, kubectl
# exec, and PVC binding with data that survives its pod.
source "$(dirname "$0")/lib.sh"
export KUBECONFIG=${KUBECONFIG:-$("$TB_DIR/../cluster.sh" kubeconfig)}
k() { "$BIN/kubectl" "$@"; }
ns=relevo-smoke
start=$SECONDS

"$REPO_ROOT/images/build.sh" redis
"$TB_DIR/../cluster.sh" load "$REDIS_IMAGE"

k delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
k create namespace "$ns" >/dev/null
trap 'k delete namespace "$ns" --wait=false >/dev/null 2>&1' EXIT

log "smoke: a Deployment behind a Service, answered through cluster DNS from a pod on every node"
k -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 1
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - name: redis
        image: $REDIS_IMAGE
        ports: [{containerPort: 6379}]
        readinessProbe:
          exec: {command: [redis-cli, ping]}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{port: 7000, targetPort: 6379}]
YAML
k -n "$ns" wait --for=condition=Available deployment/echo --timeout=120s >/dev/null
nodes=$(k get nodes -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
i=0
while read -r node; do
  i=$((i + 1))
  k -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: batch/v1
kind: Job
metadata: {name: client-$i, labels: {app: client}, annotations: {node: $node}}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      nodeSelector: {kubernetes.io/hostname: $node}
      containers:
      - name: client
        image: $REDIS_IMAGE
        command: [sh, -c]
        args:
        - |
          set -e
          getent hosts echo.$ns.svc.cluster.local
          # A new connection per try: one made before kube-proxy programmed
          # the Service would stay on an un-NATed flow for good.
          for try in 1 2 3 4 5 6 7 8 9 10; do
            timeout 3 redis-cli -h echo.$ns.svc.cluster.local -p 7000 ping && exit 0
            echo "try \$try: no answer yet" >&2
          done
          exit 1
YAML
done <<<"$nodes"
clients=$i
jobs_finished() {
  local states
  states=$(k -n "$ns" get jobs -l app=client -o jsonpath='{range .items[*]}{.status.succeeded}{.status.failed}{"\n"}{end}')
  [[ $(grep -c . <<<"$states") == "$clients" ]]
}
wait_for "the $clients client Jobs to finish" 120 jobs_finished || true
svc_ip=$(k -n "$ns" get service echo -o jsonpath='{.spec.clusterIP}')
for i in $(seq 1 "$clients"); do
  node=$(k -n "$ns" get job "client-$i" -o jsonpath='{.metadata.annotations.node}')
  if [[ $(k -n "$ns" get job "client-$i" -o jsonpath='{.status.succeeded}') != 1 ]]; then
    k -n "$ns" logs "job/client-$i" >&2 || true
    k -n "$ns" describe "job/client-$i" >&2 || true
    die "smoke: the client pod on $node could not reach the Service by name"
  fi
  out=$(k -n "$ns" logs "job/client-$i")
  grep -q "^$svc_ip " <<<"$out" || die "smoke: DNS on $node did not resolve the Service to $svc_ip; got: $out"
  grep -qx PONG <<<"$out" || die "smoke: no PONG through the Service on $node; got: $out"
done
log "smoke: the Service answered by name on each of the $clients nodes"

log "smoke: a StatefulSet's volume binds and its data survives the pod"
k -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: {name: store}
spec:
  clusterIP: None
  selector: {app: store}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: store}
spec:
  serviceName: store
  replicas: 1
  selector: {matchLabels: {app: store}}
  template:
    metadata: {labels: {app: store}}
    spec:
      securityContext: {runAsUser: 999, runAsNonRoot: true}
      containers:
      - name: redis
        image: $REDIS_IMAGE
        command: [redis-server, --dir, /data, --appendonly, "yes", --protected-mode, "no"]
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 64Mi}}
YAML
wait_for "store-0 Ready" 120 k -n "$ns" wait --for=condition=Ready pod/store-0 --timeout=5s
phase=$(k -n "$ns" get pvc data-store-0 -o jsonpath='{.status.phase}')
[[ $phase == Bound ]] || die "smoke: PVC data-store-0 is $phase, not Bound"
token=$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
k -n "$ns" exec store-0 -- redis-cli set token "$token" >/dev/null
k -n "$ns" exec store-0 -- sh -c "echo $token > /data/token"
old_uid=$(k -n "$ns" get pod store-0 -o jsonpath='{.metadata.uid}')
k -n "$ns" delete pod store-0 --wait=true >/dev/null
wait_for "store-0 recreated" 60 bash -c "[[ \$('$BIN/kubectl' -n $ns get pod store-0 -o jsonpath='{.metadata.uid}' 2>/dev/null) != '$old_uid' ]]"
wait_for "store-0 Ready" 120 k -n "$ns" wait --for=condition=Ready pod/store-0 --timeout=5s
wait_for "redis on store-0 answering" 30 k -n "$ns" exec store-0 -- redis-cli ping
got_file=$(k -n "$ns" exec store-0 -- cat /data/token)
got_key=$(k -n "$ns" exec store-0 -- redis-cli get token)
[[ $got_file == "$token" ]] || die "smoke: file on the volume is '$got_file', want '$token'"
[[ $got_key == "$token" ]] || die "smoke: Redis key after restart is '$got_key', want '$token'"

k delete namespace "$ns" --wait=true --timeout=120s >/dev/null
trap - EXIT
log "smoke: passed in $((SECONDS - start))s"
echo "smoke: 2 passed, 0 failed"
