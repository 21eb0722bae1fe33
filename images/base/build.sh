#!/usr/bin/env bash
# Provides `debian:bookworm-slim` to docker. With RELEVO_PULL_BASE=1 (online)
# it is pulled; otherwise a debootstrap of bookworm, cached under
# $RELEVO_CACHE, is imported under that name so that the Dockerfiles in
# images/ build unchanged, with no registry.
set -euo pipefail
cache=${RELEVO_CACHE:-/var/cache/relevo}/images
image=debian:bookworm-slim

docker image inspect "$image" >/dev/null 2>&1 && exit 0
if [[ ${RELEVO_PULL_BASE:-0} == 1 ]] && docker pull "$image"; then
  exit 0
fi
mkdir -p "$cache"
if [[ ! -f $cache/rootfs-bookworm/.complete ]]; then
  echo "[images] debootstrap bookworm into $cache/rootfs-bookworm" >&2
  rm -rf "$cache/rootfs-bookworm"
  debootstrap --variant=minbase bookworm "$cache/rootfs-bookworm" http://deb.debian.org/debian >/dev/null
  rm -rf "$cache"/rootfs-bookworm/var/cache/apt/archives/*.deb "$cache"/rootfs-bookworm/var/lib/apt/lists/*
  touch "$cache/rootfs-bookworm/.complete"
fi
tar -C "$cache/rootfs-bookworm" --exclude=./.complete -c . | docker import -c 'CMD ["bash"]' - "$image" >/dev/null
