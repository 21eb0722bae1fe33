#!/usr/bin/env bash
# A bare control plane for the integration tier: etcd and kube-apiserver on
# loopback ports of their own, no node. It runs beside the full test bed.
#   apiserver.sh start|stop|kubeconfig
export TB_STATE=/var/lib/relevo-integration
source "$(dirname "$0")/lib.sh"
TB_RUN=/run/relevo-integration
export APISERVER_URL=https://127.0.0.1:6444

case ${1:-} in
  start)
    "$TB_DIR/build.sh"
    mkdir -p "$TB_STATE" "$TB_RUN"
    "$TB_DIR/pki.sh"
    start_daemon etcd "$BIN/etcd" --name relevo-it --data-dir "$TB_STATE/etcd" \
      --listen-client-urls http://127.0.0.1:2479 --advertise-client-urls http://127.0.0.1:2479 \
      --listen-peer-urls http://127.0.0.1:2480 --initial-advertise-peer-urls http://127.0.0.1:2480 \
      --initial-cluster relevo-it=http://127.0.0.1:2480 --listen-metrics-urls http://127.0.0.1:2481 \
      --unsafe-no-fsync --log-level warn
    wait_for "etcd (integration)" 30 curl -fsS http://127.0.0.1:2481/health
    start_daemon kube-apiserver "$BIN/kube-apiserver" \
      --etcd-servers http://127.0.0.1:2479 --bind-address 127.0.0.1 --secure-port 6444 \
      --advertise-address 127.0.0.1 --service-cluster-ip-range 10.97.0.0/16 \
      --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
      --client-ca-file "$PKI/ca.crt" \
      --service-account-issuer https://kubernetes.default.svc.cluster.local \
      --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
      --authorization-mode RBAC --profiling=false --v=1
    wait_for "kube-apiserver (integration)" 90 kube get --raw /readyz
    log "integration apiserver up; KUBECONFIG=$KUBECONFIG_ADMIN"
    ;;
  stop)
    stop_daemon kube-apiserver
    stop_daemon etcd
    rm -rf "$TB_STATE" "$TB_RUN"
    ;;
  kubeconfig) echo "$KUBECONFIG_ADMIN" ;;
  *) echo "usage: apiserver.sh start|stop|kubeconfig" >&2; exit 2 ;;
esac
