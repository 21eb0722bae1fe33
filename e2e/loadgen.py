#!/usr/bin/python3
"""A writer that keeps going through switchovers, for `make bench`.

CLIENTS threads, each with one persistent connection (libpq's environment: PGHOST,
PGHOSTADDR, PGSSLMODE, ...), insert into TABLE(client, seq) at RATE transactions/s in
all, each on a fixed schedule. A transaction that fails is counted and its connection
dropped; the client reconnects for its next one (as an application with a retrying
driver would). The latency of a transaction is measured from its scheduled start, as
pgbench -R does, so a stall shows in full. Runs until STOP_FILE exists or SECONDS pass,
whichever is first, then prints one line of figures:

  acked=N failed=N reconnects=N p50_ms=X p99_ms=X max_ms=X longest_gap_ms=X

longest_gap_ms is the longest time one client went without an acknowledged commit
(failures included), the stall an application sees.
"""

import argparse
import os
import threading
import time

import psycopg2

KEEPALIVES = "keepalives=1 keepalives_idle=2 keepalives_interval=1 keepalives_count=3 tcp_user_timeout=5000"


def client(number, args, deadline, results):
    period = args.clients / args.rate
    next_at = time.monotonic() + number * period / args.clients
    conn = None
    latencies, failed, reconnects = [], 0, 0
    last_ack = time.monotonic()
    longest_gap = 0.0
    seq = 0
    while time.monotonic() < deadline and not os.path.exists(args.stop_file):
        pause = next_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        scheduled = next_at
        next_at += period
        seq += 1
        try:
            if conn is None:
                # Keepalives and a user timeout: a peer that vanished fails the
                # transaction within seconds instead of holding the client forever.
                conn = psycopg2.connect(KEEPALIVES)
                conn.autocommit = True
                reconnects += 1
            with conn.cursor() as cursor:
                cursor.execute(f"INSERT INTO {args.table} (client, seq) VALUES (%s, %s)", (number, seq))
            done = time.monotonic()
            latencies.append(done - scheduled)
            longest_gap = max(longest_gap, done - last_ack)
            last_ack = done
        except psycopg2.Error:
            failed += 1
            if conn is not None:
                try:
                    conn.close()
                except psycopg2.Error:
                    pass
            conn = None
    longest_gap = max(longest_gap, time.monotonic() - last_ack)
    if conn is not None:
        conn.close()
    # The first connection is not a reconnect.
    results[number] = (latencies, failed, max(reconnects - 1, 0), longest_gap)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rate", type=float, default=60.0)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--table", default="bench_load")
    parser.add_argument("--stop-file", required=True)
    args = parser.parse_args()
    if not args.table.isidentifier():
        parser.error("--table must be a plain identifier")
    deadline = time.monotonic() + args.seconds
    results = {}
    threads = [threading.Thread(target=client, args=(n, args, deadline, results)) for n in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies = sorted(l for r in results.values() for l in r[0])
    failed = sum(r[1] for r in results.values())
    reconnects = sum(r[2] for r in results.values())
    gap = max((r[3] for r in results.values()), default=0.0)

    def pct(p):
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, (p * len(latencies) + 99) // 100 - 1)] * 1000

    print(
        f"acked={len(latencies)} failed={failed} reconnects={reconnects} "
        f"p50_ms={pct(50):.1f} p99_ms={pct(99):.1f} max_ms={(latencies[-1] * 1000 if latencies else 0):.1f} "
        f"longest_gap_ms={gap * 1000:.0f}"
    )


if __name__ == "__main__":
    main()
