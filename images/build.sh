#!/usr/bin/env bash
# Builds relevo's images with docker under the fixed tags of tags.env.
#   images/build.sh [base|pause|coredns|postgres|redis|pgbouncer|operator]...
#   images/build.sh --print-binary   (builds the relevo binary, prints its path)
# With no argument it builds the product images: postgres, redis, pgbouncer, operator.
# Binaries that go into images are built on the host first (Rust by cargo, the
# test bed's by e2e/testbed/build.sh), so that docker needs no toolchain.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
source "$here/tags.env"
cache=${RELEVO_CACHE:-/var/cache/relevo}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/cargo-target}

# build_with DIR TAG [FILE...]: docker build of images/DIR with FILEs added to
# a throwaway context beside its Dockerfile.
build_with() {
  local dir=$1 tag=$2; shift 2
  local ctx
  ctx=$(mktemp -d)
  cp "$here/$dir/Dockerfile" "$ctx/"
  for f in "$@"; do cp "$f" "$ctx/"; done
  echo "[images] building $tag" >&2
  docker build -q -t "$tag" "$ctx" >/dev/null
  rm -rf "$ctx"
}

relevo_binary() {
  (cd "$root" && cargo build --release --locked -q -p relevo --bin relevo) >&2
  echo "$CARGO_TARGET_DIR/release/relevo"
}

if [[ ${1:-} == --print-binary ]]; then
  relevo_binary
  exit
fi
targets=("$@")
((${#targets[@]})) || targets=(postgres redis pgbouncer operator)
for t in "${targets[@]}"; do
  case $t in
    base) "$here/base/build.sh" ;;
    pause) "$here/base/build.sh"; build_with pause "$PAUSE_IMAGE_TAG" "$cache/bin/pause" ;;
    coredns) build_with coredns "$COREDNS_IMAGE_TAG" "$cache/bin/coredns" ;;
    redis) "$here/base/build.sh"; build_with redis "$REDIS_IMAGE" ;;
    postgres) "$here/base/build.sh"; build_with postgres "$POSTGRES_IMAGE" "$(relevo_binary)" ;;
    pgbouncer) "$here/base/build.sh"; build_with pgbouncer "$PGBOUNCER_IMAGE" "$(relevo_binary)" ;;
    operator) "$here/base/build.sh"; build_with operator "$OPERATOR_IMAGE" "$(relevo_binary)" ;;
    *) echo "images/build.sh: unknown image '$t'" >&2; exit 2 ;;
  esac
done
