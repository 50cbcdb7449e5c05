#!/usr/bin/env python3
"""Load generator for `shopclip serve` (issue 16's serving figures; standard library only).

For each client count, CLIENTS threads each send POST /search requests back to back over one
keep-alive connection for SECONDS (after a short warm-up), with queries drawn in turn from a
texts file. Client-side latency (p50, p99, mean) and queries/s are measured here; /metrics before
and after gives the server's mean time per request in its queue, the text tower and the search,
and the mean batch size; the rest of the client's latency is HTTP, JSON and thread hand-offs
(the load generator runs on the same machine and takes CPU from the server: stated in the record).

Usage: serve_bench.py PORT TEXTS.jsonl SECONDS CLIENTS[,CLIENTS...] > figures.json
"""
import http.client
import json
import sys
import threading
import time


def metrics(port):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/metrics")
    body = connection.getresponse().read().decode()
    connection.close()
    values = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def run_clients(port, texts, clients, seconds):
    latencies = [[] for _ in range(clients)]
    failures = []

    def client(c, stop_at):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = c * 7
        while time.time() < stop_at:
            body = json.dumps({"query": texts[i % len(texts)], "k": 10})
            i += 1
            start = time.perf_counter()
            connection.request("POST", "/search", body=body,
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            data = response.read()
            elapsed = time.perf_counter() - start
            if response.status != 200:
                failures.append((response.status, data[:200]))
                continue
            latencies[c].append(elapsed)
        connection.close()

    stop_at = time.time() + seconds
    threads = [threading.Thread(target=client, args=(c, stop_at)) for c in range(clients)]
    start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - start
    return sorted(x for lat in latencies for x in lat), failures, wall


def stage_means(before, after):
    def delta(name):
        return after.get(name, 0) - before.get(name, 0)
    n = delta("shopclip_serve_queue_wait_seconds_count")
    batches = delta("shopclip_serve_batch_queries_count")
    return {
        "requests": n,
        "queue_ms": 1000 * delta("shopclip_serve_queue_wait_seconds_sum") / n,
        "text_tower_ms": 1000 * delta("shopclip_serve_text_tower_seconds_sum") / n,
        "search_ms": 1000 * delta("shopclip_serve_search_seconds_sum") / n,
        "handler_ms": 1000 * delta('shopclip_serve_request_seconds_sum{endpoint="search"}') / n,
        "mean_batch": delta("shopclip_serve_batch_queries_sum") / batches if batches else 0,
    }


def main():
    port, texts_path = int(sys.argv[1]), sys.argv[2]
    seconds = float(sys.argv[3])
    counts = [int(c) for c in sys.argv[4].split(",")]
    texts = [json.loads(line)["text"] for line in open(texts_path, encoding="utf-8")]
    rows = []
    for clients in counts:
        run_clients(port, texts, clients, min(3.0, seconds / 4))  # warm-up
        before = metrics(port)
        latencies, failures, wall = run_clients(port, texts, clients, seconds)
        after = metrics(port)
        if failures:
            sys.exit(f"{clients} clients: {len(failures)} failed requests, first {failures[0]}")
        stages = stage_means(before, after)
        mean_ms = 1000 * sum(latencies) / len(latencies)
        row = {
            "clients": clients,
            "requests": len(latencies),
            "queries_per_second": len(latencies) / wall,
            "latency_ms_p50": 1000 * latencies[len(latencies) // 2],
            "latency_ms_p99": 1000 * latencies[min(len(latencies) - 1,
                                                   int(0.99 * len(latencies)))],
            "latency_ms_mean": mean_ms,
            **stages,
        }
        row["http_and_rest_ms"] = (mean_ms - stages["queue_ms"] - stages["text_tower_ms"]
                                   - stages["search_ms"])
        rows.append(row)
        print(f"{clients} clients: {row['queries_per_second']:.0f} q/s, p50 "
              f"{row['latency_ms_p50']:.2f} ms, p99 {row['latency_ms_p99']:.2f} ms, tower "
              f"{stages['text_tower_ms']:.2f} ms, search {stages['search_ms']:.2f} ms, batch "
              f"{stages['mean_batch']:.1f}", file=sys.stderr)
    json.dump({"seconds": seconds, "rows": rows}, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
