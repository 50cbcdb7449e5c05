#!/usr/bin/env python3
"""Client checks of `shopclip serve` for tests/e2e/serve.sh (standard library only).

  serve_client.py equal PORT TEXTS PREDICTIONS exact|approximate   /search and /search/batch
      answer every query of TEXTS ({split}_texts.jsonl) with the ids of eval's PREDICTIONS (same
      index); with an exact index, scores fall
  serve_client.py bad PORT POOL                  every malformed request gets its 400 (or 404) with
      its error kind, the service keeps answering, and /metrics counts each kind
  serve_client.py load PORT PID SECONDS CLIENTS  CLIENTS concurrent clients for SECONDS: no error,
      resident memory of PID grows by less than a bound after warm-up
  serve_client.py drain PORT PID N               N requests in flight (queue_depth = N), then
      SIGTERM: all N answered 200 and the process exits
Exit status 0 when the check holds; a message naming what failed otherwise.
"""
import http.client
import json
import os
import signal
import sys
import threading
import time


def request(port, method, path, body=None, headers=None, timeout=60):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if isinstance(body, str):
            body = body.encode("utf-8")
        all_headers = {"Content-Type": "application/json"}
        all_headers.update(headers or {})
        connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def search(port, query, k=10):
    status, body = request(port, "POST", "/search", json.dumps({"query": query, "k": k}))
    if status != 200:
        sys.exit(f"/search {query!r}: status {status}: {body!r}")
    return json.loads(body)


def metrics(port):
    status, body = request(port, "GET", "/metrics")
    assert status == 200, (status, body)
    values = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def check_equal(port, texts_path, predictions_path, exact):
    texts = [json.loads(line) for line in open(texts_path, encoding="utf-8")]
    predicted = {}
    for line in open(predictions_path):
        row = json.loads(line)  # either schema: Chinese-CLIP's text_id/image_ids, or Tianchi's
        predicted[row.get("text_id", row.get("query_id"))] = row.get("image_ids", row.get("item_ids"))
    assert len(texts) == len(predicted), (len(texts), len(predicted))
    for row in texts:
        answer = search(port, row["text"])
        expected = predicted[row["text_id"]]
        if answer["image_ids"] != expected:
            sys.exit(f"/search {row['text']!r} (query {row['text_id']}): {answer['image_ids']} "
                     f"but eval predicted {expected}")
        scores = answer["scores"]
        assert len(scores) == 10, answer
        # An exact index's scores fall; a completed approximate list may rise after the index's rows.
        assert not exact or all(a >= b for a, b in zip(scores, scores[1:])), answer
        assert answer["took_ms"] > 0, answer
    # The batch endpoint, 7 queries at a time, answers the same.
    for start in range(0, len(texts), 7):
        chunk = texts[start:start + 7]
        status, body = request(port, "POST", "/search/batch",
                               json.dumps({"queries": [r["text"] for r in chunk]}))
        assert status == 200, (status, body)
        results = json.loads(body)["results"]
        for row, result in zip(chunk, results):
            if result["image_ids"] != predicted[row["text_id"]]:
                sys.exit(f"/search/batch {row['text']!r}: {result['image_ids']} but eval "
                         f"predicted {predicted[row['text_id']]}")
    # k other than 10: the first 10 of a top 20 from an exact index are the top 10.
    answer = search(port, texts[0]["text"], k=20)
    assert len(answer["image_ids"]) == 20 and len(set(answer["image_ids"])) == 20, answer
    print(f"equal: {len(texts)} queries through /search and /search/batch equal eval's predictions")


def check_bad(port, pool):
    long_query = "连衣裙" * 200  # 600 characters; the limit is 256
    cases = [
        ("POST", "/search", "not json at all", 400, "not_json"),
        ("POST", "/search", b'{"query": "\xff\xfe red"}', 400, "invalid_utf8"),
        ("POST", "/search", "[1, 2]", 400, "not_object"),
        ("POST", "/search", '{"query": "红色", "kk": 3}', 400, "unknown_field"),
        ("POST", "/search", '{"query": 42}', 400, "wrong_type"),
        ("POST", "/search", '{"query": "红色", "k": "ten"}', 400, "wrong_type"),
        ("POST", "/search", '{"query": "红色", "k": true}', 400, "wrong_type"),
        ("POST", "/search", '{"k": 10}', 400, "missing_query"),
        ("POST", "/search", '{"query": "   "}', 400, "empty_query"),
        ("POST", "/search", '{"query": ""}', 400, "empty_query"),
        ("POST", "/search", json.dumps({"query": long_query}), 400, "query_too_long"),
        ("POST", "/search", '{"query": "红色", "k": 0}', 400, "k_out_of_range"),
        ("POST", "/search", '{"query": "红色", "k": 1001}', 400, "k_out_of_range"),
        ("POST", "/search", json.dumps({"query": "红色", "k": pool + 1}), 400, "k_out_of_range"),
        ("POST", "/search/batch", '{"queries": "红色"}', 400, "wrong_type"),
        ("POST", "/search/batch", '{"queries": ["红色", 3]}', 400, "wrong_type"),
        ("POST", "/search/batch", '{"queries": []}', 400, "empty_query"),
        ("POST", "/search/batch", json.dumps({"queries": ["红色"] * 300}), 400, "too_many_queries"),
        ("POST", "/search", json.dumps({"query": "红" * 100000}), 400, "body_too_large"),
        ("GET", "/nowhere", None, 404, "not_found"),
        ("GET", "/search", None, 404, "not_found"),
    ]
    before = metrics(port)
    expected_counts = {}
    for method, path, body, status, kind in cases:
        got_status, got_body = request(port, method, path, body)
        answer = json.loads(got_body) if got_body else {}
        if got_status != status or answer.get("error") != kind or not answer.get("message"):
            sys.exit(f"{method} {path} {str(body)[:60]!r}: expected {status} {kind}, got "
                     f"{got_status} {got_body[:200]!r}")
        expected_counts[kind] = expected_counts.get(kind, 0) + 1
        # The service still answers after each refusal.
        assert len(search(port, "红色 连衣裙")["image_ids"]) == 10
    after = metrics(port)
    for kind, n in expected_counts.items():
        key = f'shopclip_serve_errors_total{{kind="{kind}"}}'
        if after[key] - before.get(key, 0) != n:
            sys.exit(f"/metrics counted {after[key] - before.get(key, 0)} {kind} errors, not {n}")
    # A float k with an integral value is accepted (some JSON encoders write 10.0).
    status, body = request(port, "POST", "/search", '{"query": "红色", "k": 5.0}')
    assert status == 200 and len(json.loads(body)["image_ids"]) == 5, (status, body)
    status, body = request(port, "GET", "/healthz")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok" and health["images"] == pool, health
    print(f"bad: {len(cases)} malformed requests refused with their kinds and counted; "
          "the service kept answering")


def check_load(port, pid, seconds, clients):
    texts = ["红色 连衣裙", "白色 条纹 衬衫", "黑色 皮鞋", "蓝色 牛仔裤", "运动鞋 男", "包包"]
    failures = []
    counts = [0] * clients
    latencies = [[] for _ in range(clients)]

    def client(c, stop_at):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = c
        while time.time() < stop_at:
            body = json.dumps({"query": texts[i % len(texts)], "k": 10})
            i += 1
            start = time.time()
            try:
                connection.request("POST", "/search", body=body,
                                   headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as e:
                failures.append(f"client {c}: {e!r}")
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            latencies[c].append(time.time() - start)
            if response.status != 200 or len(json.loads(data)["image_ids"]) != 10:
                failures.append(f"client {c}: status {response.status} {data[:100]!r}")
            counts[c] += 1
        connection.close()

    def run(duration):
        stop_at = time.time() + duration
        threads = [threading.Thread(target=client, args=(c, stop_at)) for c in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    run(min(2.0, seconds / 4))  # warm-up: allocator pools, thread stacks, FAISS buffers
    warm_rss = rss_mib(pid)
    errors_before = sum(v for k, v in metrics(port).items() if k.startswith("shopclip_serve_errors"))
    counts[:] = [0] * clients
    for lat in latencies:
        lat.clear()
    run(seconds)
    end_rss = rss_mib(pid)
    m = metrics(port)
    errors_after = sum(v for k, v in m.items() if k.startswith("shopclip_serve_errors"))
    total = sum(counts)
    all_latencies = sorted(x for lat in latencies for x in lat)
    p50 = all_latencies[len(all_latencies) // 2] * 1000
    print(f"load: {clients} clients x {seconds} s: {total} requests ({total / seconds:.0f}/s), "
          f"p50 {p50:.1f} ms, RSS {warm_rss:.1f} -> {end_rss:.1f} MiB, "
          f"{errors_after - errors_before:.0f} errors counted")
    if failures:
        sys.exit(f"load: {len(failures)} failed requests, first: {failures[0]}")
    if errors_after != errors_before:
        sys.exit("load: /metrics counted errors during the load")
    if total < clients:
        sys.exit(f"load: only {total} requests answered")
    if end_rss - warm_rss > 64:
        sys.exit(f"load: resident memory grew by {end_rss - warm_rss:.1f} MiB (bound 64)")


def check_drain(port, pid, n):
    results = [None] * n

    def client(i):
        try:
            results[i] = request(port, "POST", "/search",
                                 json.dumps({"query": f"红色 连衣裙 {i}", "k": 10}))
        except (OSError, http.client.HTTPException) as e:
            results[i] = (None, repr(e).encode())

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    # Wait until all n are accepted (the server waits --max-wait-ms, longer than this, for a
    # batch to fill).
    deadline = time.time() + 25
    while metrics(port)["shopclip_serve_queue_depth"] < n:
        if time.time() > deadline:
            sys.exit(f"drain: the queue never held {n} queries")
        time.sleep(0.01)
    os.kill(pid, signal.SIGTERM)
    for t in threads:
        t.join()
    bad = [(i, r) for i, r in enumerate(results) if r is None or r[0] != 200]
    if bad:
        sys.exit(f"drain: {len(bad)} of {n} requests in flight at SIGTERM were lost, first: "
                 f"{bad[0]}")
    for status, body in results:
        assert len(json.loads(body)["image_ids"]) == 10, body
    print(f"drain: {n} requests in flight at SIGTERM, all answered")


def main():
    command, port = sys.argv[1], int(sys.argv[2])
    if command == "equal":
        check_equal(port, sys.argv[3], sys.argv[4], sys.argv[5] == "exact")
    elif command == "bad":
        check_bad(port, int(sys.argv[3]))
    elif command == "load":
        check_load(port, int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
    elif command == "drain":
        check_drain(port, int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(f"unknown check {command}")


if __name__ == "__main__":
    main()
