#!/usr/bin/python3
"""MUGE text-to-image retrieval scorer, written from the official rules alone (not from shopclip's
C++ metrics), so that tests can check shopclip's numbers against code that shares none of it.

Rules (MUGE / Chinese-CLIP evaluation, as the README's "Evaluation" section states them):
  - Prediction file: one JSON object a line, {"text_id": int, "image_ids": [10 ints]}
    (Tianchi schema: {"query_id": int, "item_ids": [10 ints]}). The file is rejected when a line
    is not JSON, an id is not an integer (a JSON string, float or bool is not), a query has other
    than exactly 10 ids or a repeated id, a query is predicted twice, or a reference query has no
    prediction. Predictions for queries absent from the reference are ignored.
  - Reference file: {"text_id", "text", "image_ids"} (Tianchi: {"query_id", "query_text",
    "item_ids"}), the ground-truth image ids of each query.
  - A query is a hit at K when ANY of its ground-truth ids is among its first K predicted ids.
    R@K = hits / number of reference queries x 100; MeanRecall = (R@1 + R@5 + R@10) / 3.

Usage:
  muge_score.py --ref REF --pred PRED [--tianchi]
      prints {"success": true, "score": MR, "scoreJson": {"score", "mean_recall", "r1", "r5",
      "r10"}} and exits 0, or {"success": false, "score": 0, "errorMsg": ...} and exits 1.
  muge_score.py --ref REF --pred PRED [--tianchi] --expect SCORES.json [--expect-path a.scores]
                [--tolerance 1e-9]
      also compares with scores that shopclip wrote; exits 2 (printing both) when they differ.
      SCORES.json may be the official-scorer JSON (scoreJson: `shopclip eval`'s eval/SPLIT.json,
      the stdout of `shopclip score` / `search --ref`), summary.json (its "valid" object),
      report/SPLIT.json (its "scores" object) or any JSON with r1/r5/r10/mean_recall at the top;
      --expect-path picks a nested object by dotted keys (compare.json: a.scores or b.scores).
      A "queries" count and a "score", when present, are checked too.
  --per-query OUT.jsonl writes, for each reference query in file order,
      {"text_id": id, "first_hit": rank 1..10 or null, "hit1": bool, "hit5": bool, "hit10": bool}.
"""

import argparse
import json
import sys

K = 10  # ids per prediction line
CUTOFFS = (1, 5, 10)


class Rejected(Exception):
    """The file breaks an official rule; the message says which line and why."""


def is_int(value):
    # JSON true/false load as Python bool, a subclass of int: the official rules want integers.
    return isinstance(value, int) and not isinstance(value, bool)


def read_lines(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise Rejected(f"cannot read the {what} file {path}: {e.strerror}")
    except UnicodeDecodeError as e:
        raise Rejected(f"the {what} file {path} is not UTF-8: {e}")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\r")
        try:
            row = json.loads(line)
        except ValueError:
            raise Rejected(f"{what} line {number} is not JSON: {line[:80]!r}")
        if not isinstance(row, dict):
            raise Rejected(f"{what} line {number} is not a JSON object: {line[:80]!r}")
        yield number, row


def read_ids(row, key, number, what):
    if key not in row:
        raise Rejected(f"{what} line {number} has no {key!r}")
    ids = row[key]
    if not isinstance(ids, list):
        raise Rejected(f"{what} line {number}: {key!r} is not a list")
    for rank, value in enumerate(ids, 1):
        if not is_int(value):
            raise Rejected(f"{what} line {number}: {key} has a non-integer id {value!r} at "
                           f"position {rank}")
    return ids


def read_query_id(row, key, number, what):
    if key not in row:
        raise Rejected(f"{what} line {number} has no {key!r}")
    if not is_int(row[key]):
        raise Rejected(f"{what} line {number}: {key} {row[key]!r} is not an integer")
    return row[key]


def read_reference(path, tianchi):
    """Returns [(query id, set of ground-truth ids)] in file order."""
    id_key, images_key = ("query_id", "item_ids") if tianchi else ("text_id", "image_ids")
    reference, seen = [], set()
    for number, row in read_lines(path, "reference"):
        qid = read_query_id(row, id_key, number, "reference")
        if qid in seen:
            raise Rejected(f"reference line {number}: query {qid} appears twice")
        seen.add(qid)
        truth = read_ids(row, images_key, number, "reference")
        if not truth:
            raise Rejected(f"reference line {number}: query {qid} has no ground-truth ids "
                           "(a test file without answers cannot be scored)")
        reference.append((qid, set(truth)))
    if not reference:
        raise Rejected(f"the reference file {path} has no queries")
    return reference


def read_predictions(path, tianchi, reference):
    id_key, images_key = ("query_id", "item_ids") if tianchi else ("text_id", "image_ids")
    predictions = {}
    for number, row in read_lines(path, "prediction"):
        qid = read_query_id(row, id_key, number, "prediction")
        ids = read_ids(row, images_key, number, "prediction")
        if len(ids) != K:
            raise Rejected(f"prediction line {number}: query {qid} has {len(ids)} ids, "
                           f"exactly {K} are required")
        if len(set(ids)) != K:
            repeated = sorted({i for i in ids if ids.count(i) > 1})
            raise Rejected(f"prediction line {number}: query {qid} repeats ids {repeated}")
        if qid in predictions:
            raise Rejected(f"prediction line {number}: query {qid} is predicted twice")
        predictions[qid] = ids
    missing = [qid for qid, _ in reference if qid not in predictions]
    if missing:
        shown = ", ".join(str(q) for q in missing[:10])
        raise Rejected(f"{len(missing)} reference queries have no prediction: {shown}"
                       + (" ..." if len(missing) > 10 else ""))
    return predictions


def first_hit(truth, ids):
    """1-based rank of the first predicted id that is a ground-truth id, or None."""
    for rank, image_id in enumerate(ids, 1):
        if image_id in truth:
            return rank
    return None


def score(reference, predictions):
    per_query = []
    hits = {k: 0 for k in CUTOFFS}
    for qid, truth in reference:
        rank = first_hit(truth, predictions[qid])
        row = {"text_id": qid, "first_hit": rank}
        for k in CUTOFFS:
            hit = rank is not None and rank <= k
            row[f"hit{k}"] = hit
            hits[k] += hit
        per_query.append(row)
    n = len(reference)
    recall = {f"r{k}": hits[k] / n * 100 for k in CUTOFFS}
    mean_recall = (recall["r1"] + recall["r5"] + recall["r10"]) / 3
    result = {"success": True, "score": mean_recall,
              "scoreJson": {"score": mean_recall, "mean_recall": mean_recall, **recall}}
    return result, per_query


def load_expected(path, dotted):
    """shopclip's scores as a dict with r1, r5, r10, mean_recall (and maybe queries, score)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        data = json.loads(text)
    except ValueError:
        # Captured stdout of `shopclip score`/`search --ref`: the last line that is a JSON object.
        data = None
        for line in reversed(text.splitlines()):
            try:
                data = json.loads(line)
                if isinstance(data, dict):
                    break
            except ValueError:
                continue
        if not isinstance(data, dict):
            raise SystemExit(f"muge_score: no JSON object in {path}")
    if dotted:
        for key in dotted.split("."):
            if not isinstance(data, dict) or key not in data:
                raise SystemExit(f"muge_score: {path} has no {dotted!r}")
            data = data[key]
    else:
        for key in ("scoreJson", "valid", "scores"):
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    missing = [k for k in ("r1", "r5", "r10", "mean_recall") if k not in data]
    if missing:
        raise SystemExit(f"muge_score: {path} ({dotted or 'auto'}) lacks {missing}: "
                         f"{json.dumps(data)[:200]}")
    if isinstance(data.get("success"), bool) and not data["success"]:
        raise SystemExit(f"muge_score: {path} reports a failure: {data}")
    return data


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ref", required=True, help="reference queries with ground truth")
    parser.add_argument("--pred", required=True, help="predictions, 10 ids per query")
    parser.add_argument("--tianchi", action="store_true", help="query_id / item_ids files")
    parser.add_argument("--expect", help="shopclip's scores (JSON) to compare with")
    parser.add_argument("--expect-path", help="dotted keys to the scores inside --expect")
    parser.add_argument("--tolerance", type=float, default=1e-9,
                        help="largest absolute difference accepted (scores are x100)")
    parser.add_argument("--per-query", help="write each query's first-hit rank here (jsonl)")
    args = parser.parse_args()

    try:
        reference = read_reference(args.ref, args.tianchi)
        predictions = read_predictions(args.pred, args.tianchi, reference)
    except Rejected as e:
        print(json.dumps({"success": False, "score": 0, "errorMsg": str(e)}, ensure_ascii=False))
        return 1
    result, per_query = score(reference, predictions)
    print(json.dumps(result))
    if args.per_query:
        with open(args.per_query, "w", encoding="utf-8") as f:
            for row in per_query:
                f.write(json.dumps(row) + "\n")
    if not args.expect:
        return 0

    expected = load_expected(args.expect, args.expect_path)
    mine = result["scoreJson"]
    differences = []
    for key in ("r1", "r5", "r10", "mean_recall"):
        theirs = expected[key]
        if not isinstance(theirs, (int, float)) or isinstance(theirs, bool) \
                or not abs(theirs - mine[key]) <= args.tolerance:
            differences.append(f"{key}: shopclip {theirs!r}, independent {mine[key]!r}")
    if "score" in expected and not abs(expected["score"] - mine["score"]) <= args.tolerance:
        differences.append(f"score: shopclip {expected['score']!r}, independent {mine['score']!r}")
    if "queries" in expected and expected["queries"] != len(reference):
        differences.append(f"queries: shopclip {expected['queries']!r}, "
                           f"reference {len(reference)}")
    where = args.expect + (f" [{args.expect_path}]" if args.expect_path else "")
    if differences:
        print(f"MISMATCH between shopclip ({where}) and the independent scorer:", file=sys.stderr)
        for line in differences:
            print("  " + line, file=sys.stderr)
        print("  shopclip:    " + json.dumps(expected), file=sys.stderr)
        print("  independent: " + json.dumps(mine), file=sys.stderr)
        return 2
    print(f"agrees with {where} (r1 {mine['r1']:.4f}, r5 {mine['r5']:.4f}, r10 {mine['r10']:.4f},"
          f" mean_recall {mine['mean_recall']:.4f}; tolerance {args.tolerance:g})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
