#!/usr/bin/env bash
# Builds the test bed's binaries into $RELEVO_CACHE/bin: the Kubernetes
# multi-call binary (kubebin), CoreDNS (e2e/testbed/coredns) and the pause process. Each build is
# skipped when a stamp of its inputs matches, so a warm run costs seconds.
source "$(dirname "$0")/lib.sh"

mkdir -p "$BIN"

# inputs_stamp FILES...: a hash of the build inputs and the Go toolchain.
inputs_stamp() { { go version; cat "$@"; } | sha256sum | cut -d' ' -f1; }

build_kubebin() {
  local src=$TB_DIR/kubebin stamp
  stamp=$(inputs_stamp "$TB_DIR/build.sh" "$src"/go.mod "$src"/go.sum "$src"/*.go "$src"/pause/*.go)
  if [[ -x $BIN/kubebin && -x $BIN/pause && "$(cat "$BIN/kubebin.stamp" 2>/dev/null)" == "$stamp" ]]; then
    return 0
  fi
  log "building Kubernetes $K8S_VERSION components (cold: tens of minutes on 2 cores)"
  local start=$SECONDS
  # The version stamps that the Kubernetes release build would set.
  local v=k8s.io/component-base/version major=${K8S_VERSION#v} ldflags
  ldflags="-s -w -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=${major%%.*} -X $v.gitMinor=$(cut -d. -f2 <<<"$major")"
  ldflags+=" -X $v.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  (cd "$src" && go build -trimpath -ldflags="$ldflags" -o "$BIN/kubebin.new.$$" . \
    && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$BIN/pause" ./pause)
  mv "$BIN/kubebin.new.$$" "$BIN/kubebin"
  echo "$stamp" >"$BIN/kubebin.stamp"
  log "built kubebin in $((SECONDS - start))s"
}

build_coredns() {
  local src=$TB_DIR/coredns stamp
  stamp=$(inputs_stamp "$src"/go.mod "$src"/go.sum "$src"/*.go)
  if [[ -x $BIN/coredns && "$(cat "$BIN/coredns.stamp" 2>/dev/null)" == "$stamp" ]]; then
    return 0
  fi
  log "building CoreDNS $COREDNS_VERSION with the test bed's plugins"
  local start=$SECONDS
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$BIN/coredns" .)
  echo "$stamp" >"$BIN/coredns.stamp"
  log "built coredns in $((SECONDS - start))s"
}

build_kubebin
build_coredns
for c in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl kubeadm local-provisioner; do
  ln -sf kubebin "$BIN/$c"
done
