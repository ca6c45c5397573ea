"""HTTP lookup throughput: `consentry serve` (uvicorn, 1 worker) against a load generator on loopback.

Builds a bank of N random SHA-256 entries, starts the service on 127.0.0.1 (never anything
else), and runs a separate load-generator process (httpx, a thread pool) for a bounded time:
batch lookups (POST /v1/lookup, half hits, half misses), then single lookups (GET
/v1/lookup/{hash}). Prints lookups/s and p50/p99 request latency, with HMA's stated target
(1,000 qps across instances) for comparison.

    python bench/http_lookup.py [--entries 100000] [--batch 100] [--threads 4] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HOST = "127.0.0.1"  # loopback only
HMA_TARGET_QPS = 1000  # hasher-matcher-actioner goals.md: "1000 qps across multiple instances"
GOAL_LOOKUPS_PER_S = 1000


def build_store(db: Path, entries: int) -> tuple[str, list[str]]:
    """A bank of random SHA-256 entries (via the bank importer) and a scanner key."""
    from consentry.banks.importing import import_rows
    from consentry.store import Store

    hashes = [secrets.token_hex(32).upper() for _ in range(entries)]
    csv = "name,sha256\n" + "".join(f"model-{i},{h}\n" for i, h in enumerate(hashes))
    with Store.open(db) as store:
        store.banks.create("bench")
        started = time.perf_counter()
        report = import_rows(store, "bench", csv.encode(), fmt="csv", source_name="bench.csv")
        print(f"bank: {report.added:,} entries imported in {time.perf_counter() - started:.1f} s")
        key = store.api_keys.create("bench", "scanner")
    return key, hashes


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited with {server.returncode}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("server did not become healthy")


# --- the load generator (runs in its own process) ------------------------------------------------


def generate_load(url: str, key: str, hashes: list[str], mode: str, batch: int, threads: int, seconds: float) -> dict:
    import httpx

    latencies: list[float] = []
    lookups = errors = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker(seed: int) -> None:
        nonlocal lookups, errors
        import random

        rng = random.Random(seed)
        mine: list[float] = []
        done = failed = 0
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            while time.monotonic() < stop_at:
                if mode == "batch":  # half banked hashes, half unknown ones
                    values = [rng.choice(hashes) if i % 2 else secrets.token_hex(32) for i in range(batch)]
                    started = time.perf_counter()
                    response = client.post("/v1/lookup", json={"hashes": values})
                    expected = batch // 2
                else:
                    value = rng.choice(hashes)
                    started = time.perf_counter()
                    response = client.get(f"/v1/lookup/{value}")
                    expected = 1
                mine.append(time.perf_counter() - started)
                if response.status_code != 200 or response.json()["matched"] != expected:
                    failed += 1
                done += batch if mode == "batch" else 1
        with lock:
            latencies.extend(mine)
            lookups += done
            errors += failed

    started = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "mode": mode, "batch": batch if mode == "batch" else 1, "threads": threads, "seconds": elapsed,
        "requests": len(latencies), "lookups": lookups, "errors": errors,
        "lookups_per_s": lookups / elapsed, "requests_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }  # fmt: skip


def run_generator(url: str, key: str, hashes_file: Path, mode: str, args: argparse.Namespace) -> dict:
    """Start the load generator as a separate process, so it does not share the server's GIL."""
    command = [sys.executable, __file__, "--generate", url, key, str(hashes_file), mode,
               "--batch", str(args.batch), "--threads", str(args.threads), "--seconds", str(args.seconds)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.seconds + 120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100, help="hashes per batch request")
    parser.add_argument("--threads", type=int, default=4, help="load-generator threads (concurrent requests)")
    parser.add_argument("--seconds", type=float, default=10, help="length of each run")
    parser.add_argument("--generate", nargs=4, metavar=("URL", "KEY", "HASHES", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.generate:
        url, key, hashes_file, mode = args.generate
        assert url.startswith(f"http://{HOST}:"), "the load generator only targets loopback"
        hashes = Path(hashes_file).read_text().split()
        print(json.dumps(generate_load(url, key, hashes, mode, args.batch, args.threads, args.seconds)))
        return

    print(f"cores: {os.cpu_count()}  python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="consentry-bench-") as tmp:
        db = Path(tmp) / "bench.db"
        key, hashes = build_store(db, args.entries)
        hashes_file = Path(tmp) / "hashes.txt"
        hashes_file.write_text("\n".join(hashes))
        port = free_port()
        url = f"http://{HOST}:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "consentry", "--db", str(db), "serve", "--host", HOST, "--port", str(port),
             "--log-level", "warning"],  # fmt: skip
        )
        try:
            wait_healthy(url, server)
            results = [run_generator(url, key, hashes_file, mode, args) for mode in ("batch", "single")]
        finally:
            server.terminate()
            server.wait(timeout=30)

    for r in results:
        print(f"{r['mode']:<7} lookups ({r['batch']} per request, {r['threads']} concurrent): "
              f"{r['lookups_per_s']:,.0f} lookups/s, {r['requests_per_s']:,.0f} requests/s, "
              f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, {r['requests']:,} requests in {r['seconds']:.1f} s, "
              f"{r['errors']} errors")  # fmt: skip
    batch = results[0]
    verdict = "met" if batch["lookups_per_s"] >= GOAL_LOOKUPS_PER_S else "NOT met"
    print(f"goal >= {GOAL_LOOKUPS_PER_S:,} lookups/s (batch, 1 worker, server and load generator on these cores): {verdict}")
    print(f"HMA's stated target for comparison: {HMA_TARGET_QPS:,} qps across multiple instances")


if __name__ == "__main__":
    main()
