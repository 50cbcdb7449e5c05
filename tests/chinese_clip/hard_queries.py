#!/usr/bin/env python3
"""Writes a queries file ({split}_texts.jsonl layout) that exercises every tokenizer rule, for the
end-to-end text check (the tiny dataset's queries are plain lower-case Chinese, digits and "ins"):

  hard_queries.py tests/fixtures/tokenizer_golden.tsv OUT.jsonl

The golden fixture's ~400 queries (column 1, unescaped: "\\\\" and "\\u{HEX}") - upper case, accents,
full-width forms, punctuation of every kind, control and space characters, emoji, scripts without
spaces, WordPiece splits, unknown words, queries longer than any context, runs of 99 to 201
characters - then words of exactly 200 and 201 characters (the WordPiece limit: kept, [UNK]). Queries of nothing but ASCII
whitespace are left out: shopclip's MUGE reader skips them as bad rows ("empty query text", README)
where Chinese-CLIP would encode [CLS] [SEP]. Only the queries are taken from the fixture, never
its tokens.
"""
import json
import re
import sys


def unescape(field):
    return re.sub(r"\\u\{([0-9A-Fa-f]+)\}|\\\\",
                  lambda m: chr(int(m.group(1), 16)) if m.group(1) else "\\", field)


def main(argv):
    fixture, out_path = argv[1:3]
    lines = open(fixture, encoding="utf-8").read().split("\n")
    if lines[0] != "query\tids_ctx52\tpieces":
        raise SystemExit(f"{fixture}: unexpected header {lines[0]!r}")
    queries = [unescape(line.split("\t")[0]) for line in lines[1:] if line]
    queries = [q for q in queries if q.strip(" \t\r\n")]
    queries += ["ab" * 100 + " T恤", "Ab" * 100 + "c 连衣裙", "ＡＢＣ" * 67]
    with open(out_path, "w", encoding="utf-8") as out:
        for n, query in enumerate(queries):
            out.write(json.dumps({"text_id": 90000000 + n, "text": query, "image_ids": []},
                                 ensure_ascii=False) + "\n")
    print(f"{len(queries)} queries -> {out_path}")


if __name__ == "__main__":
    main(sys.argv)
