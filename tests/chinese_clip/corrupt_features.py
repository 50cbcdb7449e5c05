#!/usr/bin/env python3
"""Writes wrong copies of a feature file, for the negative controls of check_features.py:

  corrupt_features.py FEATURES.jsonl OUT_DIR

writes OUT_DIR/KIND.jsonl for each KIND: copy (no change: the rewrite alone must still pass),
perturb (one value of the middle row moved by 1e-3), swap-ids (the first and the middle row's ids
exchanged, features left in place), drop-row (the middle row removed), duplicate-row (the middle
row written twice), reorder (the first two rows exchanged whole), nan (one value of the middle
row NaN). Every other value is written back exactly (Python's float repr round-trips).
"""
import copy
import json
import os
import sys


def corrupt(kind, rows, id_key):
    rows = copy.deepcopy(rows)
    mid = len(rows) // 2
    if kind == "perturb":
        rows[mid]["feature"][1] += 1e-3
    elif kind == "swap-ids":
        rows[0][id_key], rows[mid][id_key] = rows[mid][id_key], rows[0][id_key]
    elif kind == "drop-row":
        del rows[mid]
    elif kind == "duplicate-row":
        rows.insert(mid, rows[mid])
    elif kind == "reorder":
        rows[0], rows[1] = rows[1], rows[0]
    elif kind == "nan":
        rows[mid]["feature"][1] = float("nan")
    return rows


def main(argv):
    source, out_dir = argv[1:3]
    rows = [json.loads(line) for line in open(source, encoding="utf-8")]
    if len(rows) < 3:
        raise SystemExit(f"{source}: needs at least 3 rows")
    id_key = next(k for k in rows[0] if k != "feature")
    os.makedirs(out_dir, exist_ok=True)
    for kind in ("copy", "perturb", "swap-ids", "drop-row", "duplicate-row", "reorder", "nan"):
        with open(os.path.join(out_dir, kind + ".jsonl"), "w", encoding="utf-8") as out:
            for row in corrupt(kind, rows, id_key):
                out.write(json.dumps({id_key: row[id_key], "feature": row["feature"]},
                                     separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main(sys.argv)
