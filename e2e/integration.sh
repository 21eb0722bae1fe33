#!/usr/bin/env bash
# `make integration`: the Rust tests that need a real kube-apiserver, against a
# bare etcd + apiserver started for them and stopped afterwards. (The tests
# that need real PostgreSQL, pgBackRest or Redis processes run in `cargo test`.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
apiserver=$root/e2e/testbed/apiserver.sh
trap '"$apiserver" stop' EXIT
"$apiserver" start
RELEVO_IT_KUBECONFIG=$("$apiserver" kubeconfig) \
  cargo test --locked -p relevo --features integration --test apiserver
