#!/usr/bin/env python3
"""Plants one problem of every kind `shopclip data check` looks for into a copy of a MUGE dataset
(the tiny built-in one), and checks that check.json reports each exactly once, at the right file
and line, and nothing else.

  plant_problems.py plant DATA_DIR EXPECTED.json   # edits DATA_DIR in place, writes what to expect
  plant_problems.py verify EXPECTED.json CHECK.json

Run with Debian's python3 (Pillow makes the odd-sized images).
"""
import base64
import io
import json
import sys

from PIL import Image


def jpeg(width, height, colour):
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "JPEG", quality=90)
    return out.getvalue()


def b64(data):
    return base64.b64encode(data).decode()


def plant(root, expected_path):
    expected = []

    def lines_of(name):
        with open(f"{root}/{name}", encoding="utf-8") as f:
            return f.read().splitlines()

    def append(name, line, code):
        with open(f"{root}/{name}", "a", encoding="utf-8", newline="\n") as f:
            f.write(line + "\n")
        expected.append({"file": name, "line": len(lines_of(name)), "code": code})

    train_imgs = lines_of("train_imgs.tsv")
    valid_imgs = lines_of("valid_imgs.tsv")
    valid_texts = [json.loads(l) for l in lines_of("valid_texts.jsonl")]
    first_train_id, first_train_field = train_imgs[0].split("\t")
    valid_field = valid_imgs[0].split("\t")[1]
    real_jpeg = base64.b64decode(first_train_field)
    big = max(int(l.split("\t")[0]) for name in ("train", "valid", "test")
              for l in lines_of(f"{name}_imgs.tsv")) + 1000

    # Image files.
    append("train_imgs.tsv", "no tab on this line", "tsv-no-tab")
    append("train_imgs.tsv", f"12x\t{first_train_field}", "tsv-bad-id")
    append("train_imgs.tsv", f"{big}\t", "tsv-empty-field")
    append("train_imgs.tsv", f"{first_train_id}\t{b64(jpeg(64, 64, (1, 2, 3)))}", "image-duplicate-id")
    append("train_imgs.tsv", f"{big + 1}\t!!not*base64!!", "image-bad-base64")
    append("train_imgs.tsv", f"{big + 2}\t{b64(b'GIF89a' + bytes(64))}", "image-not-image")
    append("train_imgs.tsv", f"{big + 3}\t{b64(real_jpeg[: len(real_jpeg) // 2])}", "image-truncated")
    append("train_imgs.tsv", f"{big + 4}\t{b64(jpeg(8, 8, (200, 10, 10)))}", "image-too-small")
    append("train_imgs.tsv", f"{big + 5}\t{b64(jpeg(400, 40, (10, 200, 10)))}", "image-extreme-aspect")
    append("train_imgs.tsv", f"{big + 6}\t{first_train_field}", "image-duplicate-content")
    # A valid image copied into train: reported on the valid copy (its first line), as a leak.
    append("train_imgs.tsv", f"{big + 7}\t{valid_field}", None)
    expected.pop()
    expected.append({"file": "valid_imgs.tsv", "line": 1, "code": "leak-image"})

    # Query files.
    valid_id = valid_texts[0]["image_ids"][0]
    append("valid_texts.jsonl", "this is not json", "query-not-json")
    append("valid_texts.jsonl", json.dumps({"text_id": big + 10, "text": "红色连衣裙"}), "query-missing-field")
    append("valid_texts.jsonl", json.dumps({"text_id": "abc", "text": "蓝色衬衫", "image_ids": [valid_id]}), "query-bad-id")
    append("valid_texts.jsonl", json.dumps({"text_id": big + 11, "text": 5, "image_ids": [valid_id]}), "query-bad-field")
    append("valid_texts.jsonl", json.dumps({"text_id": valid_texts[0]["text_id"], "text": "黑色皮鞋", "image_ids": [valid_id]}), "query-duplicate-id")
    append("valid_texts.jsonl", json.dumps({"text_id": big + 12, "text": "  ", "image_ids": [valid_id]}), "query-empty-text")
    append("valid_texts.jsonl", json.dumps({"text_id": big + 13, "text": "长" * 80, "image_ids": [valid_id]}, ensure_ascii=False), "query-too-long")
    append("valid_texts.jsonl", json.dumps({"text_id": big + 14, "text": "白色帽子", "image_ids": []}, ensure_ascii=False), "query-no-images")
    append("valid_texts.jsonl", json.dumps({"text_id": big + 15, "text": "灰色围巾", "image_ids": [valid_id, valid_id]}, ensure_ascii=False), "query-repeated-image")
    append("valid_texts.jsonl", json.dumps({"text_id": big + 16, "text": "紫色手套", "image_ids": [big + 999]}, ensure_ascii=False), "query-unknown-image")
    train_text = json.loads(lines_of("train_texts.jsonl")[0])["text"]
    append("valid_texts.jsonl", json.dumps({"text_id": big + 17, "text": train_text, "image_ids": [valid_id]}, ensure_ascii=False), "leak-query")
    with open(f"{root}/valid_texts.jsonl", "ab") as f:  # invalid UTF-8 bytes inside the text
        f.write(b'{"text_id": %d, "text": "\xe7\xba\xa2\xff", "image_ids": [%d]}\n' % (big + 18, valid_id))
    expected.append({"file": "valid_texts.jsonl", "line": len(open(f"{root}/valid_texts.jsonl", "rb").read().splitlines()),
                     "code": "query-invalid-utf8"})
    json.dump(expected, open(expected_path, "w"), ensure_ascii=False, indent=1)
    print(f"planted {len(expected)} problems")


def verify(expected_path, check_path):
    expected = json.load(open(expected_path))
    report = json.load(open(check_path))
    found = [(f["file"].rsplit("/", 1)[-1], f["line"], f["code"]) for f in report["findings"]]
    wanted = [(e["file"], e["line"], e["code"]) for e in expected]
    missing = [w for w in wanted if w not in found]
    extra = [f for f in found if f not in wanted]
    twice = [w for w in wanted if found.count(w) > 1]
    for label, rows in (("missing", missing), ("unexpected", extra), ("reported twice", twice)):
        for row in rows:
            print(f"{label}: {row[0]}:{row[1]} [{row[2]}]")
    if missing or extra or twice:
        sys.exit(1)
    print(f"each of the {len(wanted)} planted problems found exactly once, nothing else")


if __name__ == "__main__":
    if sys.argv[1] == "plant":
        plant(sys.argv[2], sys.argv[3])
    else:
        verify(sys.argv[2], sys.argv[3])
