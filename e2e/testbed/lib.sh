# Shared settings and helpers of the offline test bed. Sourced, never run.
# Everything heavy lives in $RELEVO_CACHE so that a second run is fast; the
# cluster's own state lives in $TB_STATE and is wiped by `down`.

set -euo pipefail

TB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$TB_DIR/../.." && pwd)

export RELEVO_CACHE=${RELEVO_CACHE:-/var/cache/relevo}
export GOMODCACHE=$RELEVO_CACHE/go/mod
export GOCACHE=$RELEVO_CACHE/go/build
export GOTOOLCHAIN=local
export GOFLAGS=-mod=readonly

source "$REPO_ROOT/images/tags.env"
K8S_VERSION=v1.34.4
COREDNS_VERSION=v${COREDNS_IMAGE_TAG##*:}
# TB_BIN: another place for the built binaries (a branch whose kubebin differs).
BIN=${TB_BIN:-$RELEVO_CACHE/bin}

TB_STATE=${TB_STATE:-/var/lib/relevo-testbed}
TB_RUN=/run/relevo-testbed
TB_LOG=/var/log/relevo-testbed
PKI=$TB_STATE/pki
KUBECONFIG_ADMIN=$TB_STATE/admin.kubeconfig

NODE_NAME=relevo-node
# The node's address is the gateway of the pod bridge, so every address the
# cluster uses lies in its own pod and service ranges.
BRIDGE=relevo0
POD_CIDR=10.244.0.0/24
CLUSTER_CIDR=10.244.0.0/16
NODE_IP=10.244.0.1
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SVC_IP=10.96.0.1
DNS_IP=10.96.0.10
CONTAINERD_SOCK=$TB_RUN/containerd/containerd.sock

PAUSE_IMAGE=docker.io/$PAUSE_IMAGE_TAG
COREDNS_IMAGE=docker.io/$COREDNS_IMAGE_TAG

log() { printf '[testbed %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

source "$TB_DIR/../wait.sh"

# write_file PATH: writes standard input to PATH only if the content differs.
# kube-proxy exits when its configuration file is written at all, so a second
# `up` must leave unchanged files untouched.
write_file() {
  local content
  content=$(cat)
  [[ -f $1 && "$(cat "$1")" == "$content" ]] && return 0
  printf '%s\n' "$content" >"$1"
}

# ensure_packages PACKAGE...: installs the Debian packages that are missing, and
# nothing when all are there.
ensure_packages() {
  local missing=() p status
  for p in "$@"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

kube() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# start_daemon NAME COMMAND...: runs COMMAND detached, logging to $TB_LOG/NAME.log
# and recording its pid in $TB_RUN/NAME.pid. A live daemon is left as it is.
start_daemon() {
  local name=$1; shift
  local pidfile=$TB_RUN/$name.pid
  if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    return 0
  fi
  mkdir -p "$TB_RUN" "$TB_LOG"
  setsid "$@" >>"$TB_LOG/$name.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

# stop_daemon NAME: TERM, then KILL after a grace period.
stop_daemon() {
  local pidfile=$TB_RUN/$1.pid pid
  [[ -f $pidfile ]] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}
