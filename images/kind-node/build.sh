#!/usr/bin/env bash
# Builds relevo's kind node image offline, under the fixed tag in
# e2e/kind/lib.sh, and the tools kind needs (kind itself and crictl, from
# their Go modules). Every step is skipped when a stamp of its inputs matches,
# so a warm run costs seconds.
#   images/kind-node/build.sh           the node image, in docker
#   images/kind-node/build.sh --tools   kind and crictl only
source "$(cd "$(dirname "$0")" && pwd)/../../e2e/kind/lib.sh"
here=$REPO_ROOT/images/kind-node

# go_tool MODULE@VERSION PACKAGE: go install into $KIND_TOOLS, once per version.
go_tool() {
  local module=$1 package=$2 name
  name=$(basename "$package")
  [[ -x $KIND_TOOLS/$name && "$(cat "$KIND_TOOLS/$name.version" 2>/dev/null)" == "$module" ]] && return 0
  log "building $name from $module"
  mkdir -p "$KIND_TOOLS"
  GOBIN=$KIND_TOOLS CGO_ENABLED=0 GOFLAGS= go install -trimpath -ldflags='-s -w' "$package@${module#*@}"
  echo "$module" >"$KIND_TOOLS/$name.version"
}
go_tool "sigs.k8s.io/kind@$KIND_VERSION" sigs.k8s.io/kind
go_tool "sigs.k8s.io/cri-tools@$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl
[[ ${1:-} == --tools ]] && exit 0

"$TB_DIR/build.sh"
"$REPO_ROOT/images/build.sh" base pause coredns

# image_stamp IMAGE: the inputs stamp an image was built from (its label).
image_stamp() { docker image inspect -f '{{index .Config.Labels "relevo.inputs"}}' "$1" 2>/dev/null || true; }

# build_image TAG DOCKERFILE CONTEXT STAMP: docker build unless TAG has STAMP.
build_image() {
  local tag=$1 dockerfile=$2 ctx=$3 stamp=$4 start=$SECONDS
  [[ "$(image_stamp "$tag")" == "$stamp" ]] && return 0
  log "building $tag"
  docker build -q --label "relevo.inputs=$stamp" -t "$tag" -f "$dockerfile" "$ctx" >/dev/null
  log "built $tag in $((SECONDS - start))s"
}

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

# --- the component images kubeadm runs ------------------------------------------
cp "$BIN/kubebin" "$ctx/kubebin"
stamp=$(cat "$here/Dockerfile.components" "$BIN/kubebin.stamp" <(docker image inspect -f '{{.Id}}' debian:bookworm-slim) | sha256sum | cut -c1-16)
build_image "$KIND_COMPONENTS_IMAGE" "$here/Dockerfile.components" "$ctx" "$stamp"
rm -f "$ctx/kubebin"

# kubeadm names its images itself; tag ours under exactly those names. CoreDNS
# is ours (the kubeadm add-on is skipped), the pause image is ours retagged.
image_names=("$KIND_COMPONENTS_IMAGE" "$PAUSE_IMAGE_TAG" "$COREDNS_IMAGE_TAG")
kubeadm_images=$("$BIN/kubeadm" config images list --kubernetes-version "$K8S_VERSION")
for name in $kubeadm_images; do
  case $name in
    */coredns/*) continue ;;
    */pause:*) docker tag "$PAUSE_IMAGE_TAG" "$name" ;;
    *) docker tag "$KIND_COMPONENTS_IMAGE" "$name" ;;
  esac
  image_names+=("$name")
done
images_sha=$(for i in "${image_names[@]}"; do echo "$i $(docker image inspect -f '{{.Id}}' "$i")"; done | sha256sum | cut -c1-16)

# --- the node image ----------------------------------------------------------------
kind_dir=$(cd "$REPO_ROOT" && GOFLAGS= go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | jq -r .Dir)
kind_files=$kind_dir/images/base/files
stamp=$(cat "$here/Dockerfile" "$0" "$BIN/kubebin.stamp" "$KIND_TOOLS/crictl.version" \
  <(cd "$here/files" && find . -type f -exec sha256sum {} + | sort) \
  <(echo "$KIND_VERSION $images_sha") <(docker image inspect -f '{{.Id}}' debian:bookworm-slim) \
  | sha256sum | cut -c1-16)
if [[ "$(image_stamp "$KIND_NODE_IMAGE")" != "$stamp" ]]; then
  root=$ctx/rootfs
  mkdir -p "$root/usr/local/bin" "$root/usr/bin" "$root/kind/images" "$root/etc/systemd/system"
  # kind's node conventions, from the pinned kind release (its containerd
  # configuration is for containerd 2 and rootless set-ups; ours replaces it).
  cp "$kind_files"/usr/local/bin/{entrypoint,clean-install} "$root/usr/local/bin/"
  cp -r "$kind_files/kind" "$root/"
  cp -r "$kind_files"/etc/{sysctl.d,default,crictl.yaml} "$root/etc/"
  cp -r "$kind_files"/etc/systemd/system/{containerd.service,kubelet.service,kubelet.service.d,kubelet.slice,undo-mount-hacks.service} \
    "$root/etc/systemd/system/"
  cp -r "$here/files/." "$root/"
  cp "$BIN/kubebin" "$root/usr/bin/kubebin"
  for c in kubelet kubeadm kubectl; do ln -s kubebin "$root/usr/bin/$c"; done
  cp "$KIND_TOOLS/crictl" "$root/usr/local/bin/crictl"
  ln -s /usr/bin/containerd "$root/usr/local/bin/containerd"   # kind's unit runs it from there
  echo "$K8S_VERSION" >"$root/kind/version"
  docker save "${image_names[@]}" >"$root/kind/images/images.tar"
  echo "$images_sha" >"$root/kind/images/images.sha"
  chmod -R u=rwX,go=rX "$root"
  chmod 0755 "$root"/usr/local/bin/* "$root"/kind/bin/* "$root/usr/bin/kubebin"
  cp "$here/Dockerfile" "$ctx/Dockerfile"
  build_image "$KIND_NODE_IMAGE" "$ctx/Dockerfile" "$ctx" "$stamp"
fi
