#!/usr/bin/env bash
# Tears the test bed down and leaves nothing behind: no process, mount,
# network namespace, veth, bridge, iptables chain or cgroup of ours, and no
# cluster state. Caches under $RELEVO_CACHE stay. Safe to run at any time.
source "$(dirname "$0")/lib.sh"
set +e

if [[ -f $KUBECONFIG_ADMIN ]] && kube get --raw /readyz >/dev/null 2>&1 \
   && [[ -f $TB_RUN/kubelet.pid ]]; then
  # Let the kubelet stop every pod itself, so that the CNI plugin's DEL runs and
  # removes each pod's veth and address; controllers are stopped first so that
  # nothing is recreated meanwhile.
  stop_daemon kube-controller-manager
  stop_daemon kube-scheduler
  kube delete pods --all --all-namespaces --grace-period=2 --wait=false >/dev/null 2>&1
  wait_for "every pod stopped" 60 bash -c "[[ -z \$('$BIN/kubectl' --kubeconfig '$KUBECONFIG_ADMIN' get pods -A -o name 2>/dev/null) ]]" \
    || log "some pods did not stop in time; removing them by force"
fi

for d in local-provisioner kube-proxy kubelet kube-controller-manager kube-scheduler kube-apiserver etcd; do
  stop_daemon "$d"
done

# Whatever the kubelet did not stop: kill the containers, then containerd.
if [[ -S $CONTAINERD_SOCK ]]; then
  for task in $(ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
    ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks kill -s KILL "$task" >/dev/null 2>&1
  done
fi
stop_daemon containerd
pkill -KILL -f "containerd-shim-runc-v2 -namespace k8s.io -id .* -address $CONTAINERD_SOCK" 2>/dev/null

# kube-proxy removes its own KUBE-* chains.
[[ -x $BIN/kube-proxy ]] && "$BIN/kube-proxy" --cleanup >/dev/null 2>&1

# Mounts under our state (pod volumes, overlay snapshots, netns bind mounts),
# deepest first.
for dir in "$TB_STATE" "$TB_RUN"; do
  awk -v d="$dir" '$2 ~ "^"d {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null
  done
done
# containerd 1.6 pins pod network namespaces under /run/netns as cni-<uuid>.
for ns in /run/netns/cni-*; do
  [[ -e $ns ]] || continue
  umount -l "$ns" 2>/dev/null
  rm -f "$ns"
done

# Veths left on our bridge, then the bridge.
if ip link show "$BRIDGE" >/dev/null 2>&1; then
  for veth in $(ip -o link show master "$BRIDGE" | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link delete "$veth" 2>/dev/null
  done
  ip link delete "$BRIDGE"
fi

# Chains of the kubelet (KUBE-FIREWALL, canaries), kube-proxy's leftovers and
# the CNI plugins': first the rules that jump to them, then the chains.
for tool in iptables ip6tables; do
  for table in nat filter mangle; do
    rules=$("$tool" -t "$table" -S 2>/dev/null) || continue
    grep -E '^-A .* -j (KUBE|CNI)-' <<<"$rules" | grep -vE '^-A (KUBE|CNI)-' | sed 's/^-A/-D/' \
      | while read -r rule; do eval "$tool" -t "$table" "$rule"; done
    for chain in $(awk '/^-N (KUBE|CNI)-/ {print $2}' <<<"$rules"); do
      "$tool" -t "$table" -F "$chain"
    done
    for chain in $(awk '/^-N (KUBE|CNI)-/ {print $2}' <<<"$rules"); do
      "$tool" -t "$table" -X "$chain"
    done
  done
done

# The kubelet's pod cgroups (cgroupfs driver), leaves first.
for hierarchy in /sys/fs/cgroup/*/; do
  [[ -d ${hierarchy}kubepods ]] || continue
  find "${hierarchy}kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null
done

rm -rf "$TB_STATE" "$TB_RUN"
log "cluster down"
