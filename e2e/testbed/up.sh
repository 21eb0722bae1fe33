#!/usr/bin/env bash
# Brings up a one-node Kubernetes cluster on this machine from real components:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kube-proxy (iptables), containerd + runc, a bridge CNI, CoreDNS and a default
# StorageClass. Running it on a live cluster is harmless.
source "$(dirname "$0")/lib.sh"
start=$SECONDS

"$TB_DIR/deps.sh"
"$TB_DIR/build.sh"
"$REPO_ROOT/images/build.sh" base pause coredns

mkdir -p "$TB_STATE" "$TB_RUN" "$TB_LOG"

# The pod bridge exists before anything binds to the node address on it.
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
  ip link add "$BRIDGE" type bridge
fi
# Captured first: `ip … | grep -q` under pipefail fails whenever grep exits
# before ip has written everything (SIGPIPE), and the address is then added twice.
bridge_addrs=$(ip addr show dev "$BRIDGE")
grep -q "inet $NODE_IP/" <<<"$bridge_addrs" || ip addr add "$NODE_IP/${POD_CIDR#*/}" dev "$BRIDGE"
ip link set "$BRIDGE" up
# Service addresses are only ever reached through kube-proxy's DNAT. A packet
# that misses it (say, sent before a Service's rules exist) must stay on this
# machine instead of following the default route out: route the range onto the
# bridge, where nothing answers it.
ip route replace "$SERVICE_CIDR" dev "$BRIDGE" src "$NODE_IP"

"$TB_DIR/pki.sh"

# --- containerd, our own instance beside docker's ---------------------------
# dockerd sets the FORWARD policy to DROP; the firewall plugin admits each pod's
# traffic in its own CNI-FORWARD chain, and removes it with the pod.
mkdir -p "$TB_STATE/cni/net.d" "$TB_RUN/containerd"
write_file "$TB_STATE/cni/net.d/10-relevo.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "relevo",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$TB_STATE/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall", "backend": "iptables"}
  ]
}
JSON
write_file "$TB_STATE/containerd.toml" <<TOML
version = 2
root = "$TB_STATE/containerd"
state = "$TB_RUN/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$TB_RUN/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$TB_STATE/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # This machine refuses to lower oom_score_adj, even for root; the kubelet asks
  # for -998 on sandboxes, so clamp to containerd's own value as kind does.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$TB_STATE/cni/net.d"
TOML
start_daemon containerd containerd --config "$TB_STATE/containerd.toml"
wait_for "containerd" 30 ctr --address "$CONTAINERD_SOCK" version

"$TB_DIR/load-images.sh" "$PAUSE_IMAGE_TAG" "$COREDNS_IMAGE_TAG"

# --- control plane ------------------------------------------------------------
# No fsync: etcd's data is thrown away with the test bed, and fsync on this
# disk would dominate every write the tests make.
start_daemon etcd "$BIN/etcd" --name relevo --data-dir "$TB_STATE/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster relevo=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
  --unsafe-no-fsync --log-level warn
wait_for "etcd" 30 curl -fsS http://127.0.0.1:2381/health

start_daemon kube-apiserver "$BIN/kube-apiserver" \
  --etcd-servers http://127.0.0.1:2379 \
  --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port 6443 \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$PKI/ca.crt" \
  --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
  --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --authorization-mode Node,RBAC --allow-privileged=true \
  --enable-admission-plugins NodeRestriction --profiling=false --v=1
wait_for "kube-apiserver" 90 kube get --raw /readyz

start_daemon kube-controller-manager "$BIN/kube-controller-manager" \
  --kubeconfig "$TB_STATE/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$TB_STATE/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$TB_STATE/controller-manager.kubeconfig" \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --use-service-account-credentials --leader-elect=false --bind-address 127.0.0.1 \
  --profiling=false --v=1
start_daemon kube-scheduler "$BIN/kube-scheduler" \
  --kubeconfig "$TB_STATE/scheduler.kubeconfig" \
  --authentication-kubeconfig "$TB_STATE/scheduler.kubeconfig" \
  --authorization-kubeconfig "$TB_STATE/scheduler.kubeconfig" \
  --leader-elect=false --bind-address 127.0.0.1 --profiling=false --v=1

# --- node -----------------------------------------------------------------------
write_file "$TB_STATE/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
address: $NODE_IP
healthzBindAddress: 127.0.0.1
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
failSwapOn: false
oomScoreAdj: 0
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
# As kind does: a small disk must not evict the tests' pods, nor GC their images.
evictionHard: {memory.available: "100Mi", nodefs.available: "0%", nodefs.inodesFree: "0%", imagefs.available: "0%"}
imageGCHighThresholdPercent: 100
serializeImagePulls: false
maxPods: 110
YAML
start_daemon kubelet "$BIN/kubelet" --config "$TB_STATE/kubelet.yaml" \
  --kubeconfig "$TB_STATE/kubelet.kubeconfig" --root-dir "$TB_STATE/kubelet" \
  --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v=1

write_file "$TB_STATE/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $TB_STATE/proxy.kubeconfig}
mode: iptables
clusterCIDR: $CLUSTER_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
conntrack: {maxPerCore: 0}
oomScoreAdj: 0
YAML
start_daemon kube-proxy "$BIN/kube-proxy" --config "$TB_STATE/kube-proxy.yaml" --v=1
start_daemon local-provisioner "$BIN/local-provisioner" \
  --kubeconfig "$TB_STATE/provisioner.kubeconfig" --root "$TB_STATE/volumes" --node-name "$NODE_NAME"

wait_for "node $NODE_NAME Ready" 120 kube wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s

# --- add-ons --------------------------------------------------------------------
sed -e "s|@DNS_IP@|$DNS_IP|g" -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" \
  "$TB_DIR/addons/coredns.yaml" | kube apply -f - >/dev/null
kube apply -f "$TB_DIR/addons/storageclass.yaml" >/dev/null
wait_for "CoreDNS available" 120 kube -n kube-system wait --for=condition=Available deployment/coredns --timeout=5s

for d in containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy local-provisioner; do
  kill -0 "$(cat "$TB_RUN/$d.pid")" 2>/dev/null || die "$d is not running; see $TB_LOG/$d.log"
done
log "cluster up in $((SECONDS - start))s; KUBECONFIG=$KUBECONFIG_ADMIN"
