#!/usr/bin/env bash
# Verifies that `down` left nothing of the test bed on the machine: processes,
# mounts, network namespaces, veths, the bridge, iptables chains, cgroups or
# state. Prints each leftover and fails if there is any.
source "$(dirname "$0")/lib.sh"
left=()

for name in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy local-provisioner; do
  pgrep -f "$BIN/$name( |$)" >/dev/null && left+=("process $name")
done
pgrep -f "containerd --config $TB_STATE/containerd.toml" >/dev/null && left+=("process containerd")
pgrep -f "containerd-shim.*-address $CONTAINERD_SOCK" >/dev/null && left+=("containerd shims")
grep -qE " ($TB_STATE|$TB_RUN)" /proc/mounts && left+=("mounts under $TB_STATE or $TB_RUN")
compgen -G "/run/netns/cni-*" >/dev/null && left+=("network namespaces /run/netns/cni-*")
ip link show "$BRIDGE" >/dev/null 2>&1 && left+=("bridge $BRIDGE")
for tool in iptables ip6tables; do
  for table in nat filter mangle; do
    n=$("$tool" -t "$table" -S 2>/dev/null | grep -cE -- '-N (KUBE|CNI)-|-j (KUBE|CNI)-' || true)
    ((n == 0)) || left+=("$n $tool $table rules or chains of KUBE-*/CNI-*")
  done
done
compgen -G "/sys/fs/cgroup/*/kubepods" >/dev/null && left+=("kubepods cgroups")
[[ -e $TB_STATE || -e $TB_RUN ]] && left+=("state directories")

if ((${#left[@]})); then
  printf 'left behind: %s\n' "${left[@]}" >&2
  exit 1
fi
log "nothing of the test bed is left on the machine"
