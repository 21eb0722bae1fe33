#!/usr/bin/env bash
# `make test`: every tier in order, each timed. The cluster is torn down at the
# end whatever happened, so a failed run leaves the machine clean.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${RELEVO_CACHE:-/var/cache/relevo}/cargo-target}

timings=()
# The e2e checks that failed, listed again after the timings (the end of a long log
# is what gets read).
export RELEVO_E2E_FAILURES=${RELEVO_E2E_FAILURES:-$(mktemp -t relevo-e2e-failures.XXXXXX)}
tier() {
  local name=$1; shift
  local start=$SECONDS
  echo "=== tier: $name" >&2
  "$@"
  timings+=("$(printf '%-14s %5ss' "$name" $((SECONDS - start)))")
}
report() {
  echo "=== tier timings" >&2
  printf '  %s\n' "${timings[@]}" >&2
  if [[ -s $RELEVO_E2E_FAILURES ]]; then
    echo "=== failed e2e checks" >&2
    sed 's/^/  /' "$RELEVO_E2E_FAILURES" >&2
  fi
}
trap report EXIT

tier deps e2e/testbed/deps.sh
tier lint make -s lint
tier unit cargo test --workspace --locked
tier integration e2e/integration.sh
tier cluster-up e2e/cluster.sh up
trap 'e2e/cluster.sh down || true; report' EXIT
# A second `up` on a live cluster must change nothing that runs.
tier cluster-up-again e2e/cluster.sh up
tier smoke e2e/testbed/smoke.sh
tier e2e e2e/run-e2e.sh
tier cluster-down e2e/cluster.sh down
trap report EXIT
tier clean-check e2e/cluster.sh check-clean
