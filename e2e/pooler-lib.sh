# Clients through the managed pooler, shared by the e2e story (tests/pooler.sh)
# and the benchmark (bench.sh, BENCH_ONLY=pooler). Sourced after lib.sh.
#
# The writer is pgbench with a one-INSERT script: 4 clients on persistent
# connections at a fixed rate (60 tx/s), each transaction acknowledged by the
# server before pgbench logs it (`-l`: one line per transaction with its
# latency and completion time). pgbench aborts a client whose connection
# breaks or whose transaction fails, so "0 aborted clients" means 0 dropped
# connections and 0 failed transactions.

PL_WORK=$(mktemp -d)
PL_RATE=${PL_RATE:-60}
PL_CLIENTS=4

# pl_init NAMESPACE: a fresh namespace with the sample cluster `demo` and its
# pooler in transaction mode, and the table the writer fills.
pl_init() {
  pl_ns=$1
  k delete namespace "$pl_ns" --ignore-not-found --wait=true >/dev/null
  k create namespace "$pl_ns" >/dev/null
  trap pl_cleanup EXIT
  k -n "$pl_ns" apply -f "$REPO_ROOT/manifests/samples/pgcluster.yaml" >/dev/null
  k -n "$pl_ns" patch pgclusters.relevo.dev demo --type merge \
    -p '{"spec":{"pooler":{"instances":2,"poolMode":"transaction"}}}' >/dev/null
  if ! k -n "$pl_ns" wait --for=condition=Ready pgclusters.relevo.dev/demo --timeout=180s >/dev/null; then
    fail "PgCluster demo not Ready in 180s"
    return 1
  fi
  if ! wait_for "Deployment demo-pooler" 60 k -n "$pl_ns" get deployment demo-pooler ||
     ! k -n "$pl_ns" rollout status deployment/demo-pooler --timeout=120s >/dev/null; then
    fail "pooler Deployment not available: $(k -n "$pl_ns" get pods -l relevo.dev/cluster=demo 2>&1 | tail -5)"
    return 1
  fi
  psql_to "$pl_ns" demo-rw "CREATE TABLE IF NOT EXISTS pooler_load(id bigserial PRIMARY KEY, at timestamptz DEFAULT now())"
  pl_app_pass=$(k -n "$pl_ns" get secret demo-app -o jsonpath='{.data.password}' | base64 -d)
  pl_pooler_ip=$(k -n "$pl_ns" get service demo-pooler -o jsonpath='{.spec.clusterIP}')
  pl_rw_ip=$(k -n "$pl_ns" get service demo-rw -o jsonpath='{.spec.clusterIP}')
  echo "INSERT INTO pooler_load(at) VALUES (now());" >"$PL_WORK/insert.sql"
}

pl_cleanup() {
  [[ -n ${pl_bench_pid:-} ]] && kill "$pl_bench_pid" 2>/dev/null
  wait 2>/dev/null || true
  k delete namespace "$pl_ns" --wait=false >/dev/null 2>&1 || true
}

pl_primary() { k -n "$pl_ns" get pgclusters.relevo.dev demo -o jsonpath='{.status.currentPrimary}'; }

# pl_pgbench HOST SECONDS NAME: starts the writer in the background against
# HOST; its output and logs go to $PL_WORK/NAME.*.
pl_pgbench() {
  local host=$1 seconds=$2 name=$3
  (
    cd "$PL_WORK"
    rc=0
    PGPASSWORD=$pl_app_pass PGCONNECT_TIMEOUT=5 timeout $((seconds + 60)) \
      pgbench -h "$host" -p 5432 -U app -n -c "$PL_CLIENTS" -j 2 -R "$PL_RATE" -T "$seconds" \
      -f insert.sql -l --log-prefix="$name.log" app >"$name.out" 2>&1 || rc=$?
    echo "$rc" >"$name.rc"
  ) &
  pl_bench_pid=$!
}

# pl_wait_pgbench NAME: waits for the writer to end; true when it ended cleanly.
pl_wait_pgbench() {
  wait "$pl_bench_pid" 2>/dev/null || true
  pl_bench_pid=
  [[ $(cat "$PL_WORK/$1.rc" 2>/dev/null) == 0 ]]
}

# pl_switchovers COUNT PREFIX: planned switchovers one after the other, each to
# the instance that is not primary, each waited for until Completed. Sets
# PL_COMPLETED to the number that completed.
pl_switchovers() {
  local count=$1 prefix=$2 i current target phase
  PL_COMPLETED=0
  for ((i = 1; i <= count; i++)); do
    current=$(pl_primary)
    target=demo-2; [[ $current == demo-2 ]] && target=demo-1
    k -n "$pl_ns" apply -f - >/dev/null <<EOF
apiVersion: relevo.dev/v1alpha1
kind: Switchover
metadata: {name: $prefix-$i}
spec: {cluster: demo, targetInstance: $target, mode: Planned}
EOF
    wait_for "Switchover $prefix-$i to end" 120 pl_ended "$prefix-$i" || true
    if [[ $(pl_phase "$prefix-$i") == Completed ]]; then
      PL_COMPLETED=$((PL_COMPLETED + 1))
      say "switchover $i/$count: $current -> $target completed"
    else
      phase=$(k -n "$pl_ns" get switchovers.relevo.dev "$prefix-$i" -o jsonpath='{.status.phase}: {.status.reason}')
      say "switchover $i/$count: $current -> $target did not complete ($phase)"
      return 1
    fi
  done
}

pl_phase() { k -n "$pl_ns" get switchovers.relevo.dev "$1" -o jsonpath='{.status.phase}'; }
pl_ended() { [[ $(pl_phase "$1") =~ ^(Completed|Failed)$ ]]; }

# pl_figures NAME: from pgbench's output and per-transaction logs, sets
# PL_TX (acknowledged transactions), PL_ABORTED (clients aborted: dropped
# connections, each with its failed transaction), PL_FAILED (pgbench's failed
# transactions), PL_TPS, PL_P50/PL_P99/PL_MAX (latency, ms, including the
# schedule lag of the fixed rate) and PL_STALL (longest time, s, without any
# acknowledged transaction).
pl_figures() {
  local name=$1 out=$PL_WORK/$1.out
  PL_ABORTED=$(grep -c 'aborted in command' "$out" || true)
  PL_FAILED=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
  PL_FAILED=${PL_FAILED:-0}
  PL_TPS=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out" | head -1)
  cat "$PL_WORK/$name".log.* 2>/dev/null >"$PL_WORK/$name.all" || true
  PL_TX=$(wc -l <"$PL_WORK/$name.all")
  read -r PL_P50 PL_P99 PL_MAX < <(awk '$3 ~ /^[0-9]+$/ {print $3}' "$PL_WORK/$name.all" | sort -n |
    awk '{v[NR] = $1} END {if (NR == 0) {print "0 0 0"; exit}
      printf "%.1f %.1f %.1f\n", v[int((NR + 1) / 2)] / 1000, v[int(NR * 0.99) > 0 ? int(NR * 0.99) : 1] / 1000, v[NR] / 1000}')
  PL_STALL=$(awk '{printf "%d.%06d\n", $5, $6}' "$PL_WORK/$name.all" | sort -n |
    awk 'NR > 1 && $1 - prev > gap {gap = $1 - prev} {prev = $1} END {printf "%.2f\n", gap}')
}

# pl_loop_writer HOST NAME: the writer of the switchover bench (one psql
# INSERT per connection, every ~50 ms, at most 20000) until $PL_WORK/stop
# exists; acknowledged and refused inserts go to $PL_WORK/NAME.acked|refused.
# Refused inserts are what an application without a pooler sees fail.
pl_loop_writer() {
  local host=$1 name=$2 n=0
  rm -f "$PL_WORK/stop"
  (
    while [[ ! -e $PL_WORK/stop ]] && ((n < 20000)); do
      if PGPASSWORD=$pl_app_pass PGCONNECT_TIMEOUT=2 psql -h "$host" -U app -d app -XAtq \
          -c "INSERT INTO pooler_load(at) VALUES (now())" >/dev/null 2>&1; then
        echo "$(date +%s.%N)" >>"$PL_WORK/$name.acked"
      else
        echo "$(date +%s.%N)" >>"$PL_WORK/$name.refused"
      fi
      n=$((n + 1))
      sleep 0.05
    done
  ) &
  pl_loop_pid=$!
}

# pl_loop_stop NAME: stops the loop writer; sets PL_REFUSED and PL_GAP (the
# longest time, s, without an acknowledged insert).
pl_loop_stop() {
  touch "$PL_WORK/stop"
  wait "$pl_loop_pid" 2>/dev/null || true
  PL_REFUSED=$(cat "$PL_WORK/$1.refused" 2>/dev/null | wc -l)
  PL_GAP=$(sort -n "$PL_WORK/$1.acked" 2>/dev/null |
    awk 'NR > 1 && $1 - prev > gap {gap = $1 - prev} {prev = $1} END {printf "%.2f\n", gap}')
}
