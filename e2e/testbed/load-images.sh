#!/usr/bin/env bash
# Copies images from docker into the test bed's containerd, each
# only when docker's copy differs from the one already loaded.
#   load-images.sh IMAGE...
source "$(dirname "$0")/lib.sh"

mkdir -p "$TB_STATE/loaded-images"
for image in "$@"; do
  id=$(docker image inspect -f '{{.Id}}' "$image") || die "image $image is not built"
  stamp=$TB_STATE/loaded-images/$(echo "$image" | tr '/:' '__')
  [[ "$(cat "$stamp" 2>/dev/null)" == "$id" ]] && continue
  log "loading $image into containerd"
  docker save "$image" | ctr --address "$CONTAINERD_SOCK" -n k8s.io images import - >/dev/null
  echo "$id" >"$stamp"
done
