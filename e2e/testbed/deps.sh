#!/usr/bin/env bash
# Installs what the test bed needs on a fresh machine (Debian packages) and
# starts dockerd. Idempotent: a machine that has everything is left alone.
source "$(dirname "$0")/lib.sh"

PACKAGES=(docker.io containerd runc containernetworking-plugins debootstrap
  iptables conntrack ethtool socat ipset jq openssl iproute2 kmod bc curl
  postgresql-15 pgbackrest pgbouncer redis-server redis-tools python3-psycopg2 python3-yaml)

ensure_packages "${PACKAGES[@]}"

# The Debian packages start nothing under this machine's init; these services
# are ours to run, and host-wide PostgreSQL/Redis must not hold their ports.
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  mkdir -p "$TB_LOG"
  setsid dockerd >>"$TB_LOG/dockerd.log" 2>&1 </dev/null &
  wait_for "dockerd" 60 docker info
fi

modprobe br_netfilter 2>/dev/null || true
modprobe overlay 2>/dev/null || true
sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 \
  net.bridge.bridge-nf-call-ip6tables=1 2>/dev/null || true
