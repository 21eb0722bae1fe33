#!/usr/bin/env bash
# The primary's pod is cut off from the network (every packet of its network
# namespace dropped) while it keeps running, with a writer pinned to it from the
# cut-off side. relevo must fail over without waiting for that pod, the old
# primary must stop acknowledging writes before its successor is promoted, and
# once the partition heals it must stream from the new primary again.
# Local bed only: pod network namespaces are the host's there. On kind, the node
# faults of e2e/faults.sh play this part.
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/lib.sh"
source "$here/switchover-lib.sh"

if [[ $RELEVO_CLUSTER != local ]]; then
  say "partition: pod partitions need the local bed; skipped on $RELEVO_CLUSTER"
  summary partition
  exit 0
fi

so_init e2e-partition || { summary partition; exit 1; }
run_scenario "partition: the primary cut off for ${PARTITION_SECONDS:-60}s" partition_primary "${PARTITION_SECONDS:-60}"
check_no_write_after_promotion "partition"
lost=$(comm -23 <(awk '{print $1}' "$SO_WORK/pinned" | sort) \
  <(PSQL_ROLE=superuser psql_to "$so_ns" demo-rw "SELECT id FROM pinned" | sort) | wc -l)
say "partition: $lost writes acknowledged by the cut-off primary after the cut are not on the new primary (asynchronous replication; the lease bounds them to the seconds before its self-fence)"
FIG_PARTITION_WRITABLE=$FIG_WRITABLE
summary partition
