#!/usr/bin/env bash
# Loads docker images into every node of the kind cluster under their tags;
# kind skips each node that already holds the same image ID.
#   e2e/kind/load-images.sh IMAGE...
source "$(dirname "$0")/lib.sh"
"$KIND" load docker-image --name "$KIND_CLUSTER" "$@"
