#!/usr/bin/env python3
"""Checks `shopclip encode`'s feature files against the PyTorch reference, end to end:

  check_features.py VISION.json TEXT.json CHECKPOINT.pt IMAGES.tsv IMAGE_FEATURES.jsonl... [--normalize]
  check_features.py VISION.json TEXT.json CHECKPOINT.pt TEXTS.jsonl TEXT_FEATURES.jsonl... \\
      --vocab VOCAB.txt [--context-length N] [--normalize]

Images: decodes every image of the TSV with Pillow, converts it to RGB, resizes it straight to the
model resolution with bicubic filtering and normalises it with CLIP's mean and std (Chinese-CLIP's
preprocessing). Texts (with --vocab): tokenizes every query of the JSONL with bert_tokenizer.py
(BERT BasicTokenizer + WordPiece in Python, independent of shopclip's C++ tokenizer), [CLS] ...
[SEP], zero-padded or truncated to N tokens (default 52, as encode's). Then runs the reference
model loaded from the checkpoint (with --normalize its features are L2-normalised) and compares
with each feature file given: every line {"image_id"|"text_id": int, "feature": [embed_dim
numbers]}, every input id exactly once and no other, in input order, every value finite, and the
feature of each id within 1e-4 (max abs difference) of the reference's for that id. Prints, for
each file, what it measured and "ok FILE" on stdout, or "FAIL FILE: reason" on stderr for each
failure; exits 1 when any file fails. (Several files share one reference run: the negative
controls of encode_e2e.sh check many wrong copies at once.)
"""
import argparse
import base64
import io
import json
import math
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import bert_tokenizer  # noqa: E402  (tests/tools/bert_tokenizer.py)
from reference_model import CLIP  # noqa: E402

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
TOLERANCE = 1e-4


def reference_images(model, vision, tsv_path):
    r = vision["image_resolution"]
    ids, pixels = [], []
    for line in open(tsv_path, encoding="utf-8"):
        image_id, field = line.rstrip("\n").split("\t")
        image = Image.open(io.BytesIO(base64.urlsafe_b64decode(field))).convert("RGB")
        image = image.resize((r, r), Image.BICUBIC)
        array = (np.asarray(image, dtype=np.float32) / 255.0 - MEAN) / STD
        ids.append(int(image_id))
        pixels.append(torch.from_numpy(array.transpose(2, 0, 1).copy()))
    with torch.no_grad():
        return ids, model.encode_image(torch.stack(pixels))


def reference_texts(model, text, jsonl_path, vocab_path, context_length):
    vocab = bert_tokenizer.load_vocab(vocab_path)
    if len(vocab) != text["vocab_size"]:
        raise SystemExit(f"{vocab_path} has {len(vocab)} tokens, the text config {text['vocab_size']}")
    ids, tokens = [], []
    truncated = unknown = continued = long_words = 0
    for line in open(jsonl_path, encoding="utf-8"):
        query = json.loads(line)
        pieces = bert_tokenizer.tokenize(query["text"], vocab)
        truncated += len(pieces) > context_length - 2
        unknown += "[UNK]" in pieces
        continued += any(p.startswith("##") for p in pieces)
        # Words beyond WordPiece's limit, which become [UNK] whole.
        long_words += any(len(w) > bert_tokenizer.MAX_CHARS
                          for w in bert_tokenizer.basic_tokenize(query["text"]))
        ids.append(int(query["text_id"]))
        tokens.append(bert_tokenizer.encode(query["text"], vocab, context_length))
    print(f"{len(ids)} queries tokenized to {context_length}: {truncated} truncated, {unknown} with "
          f"[UNK], {continued} with ## pieces, {long_words} with a word over "
          f"{bert_tokenizer.MAX_CHARS} characters")
    with torch.no_grad():
        return ids, model.encode_text(torch.tensor(tokens, dtype=torch.long))


def is_number(value, types):
    return isinstance(value, types) and not isinstance(value, bool)  # JSON true loads as int 1


class Malformed(Exception):
    """The feature file cannot be read or a line breaks the format; the message says where."""


def read_features(path, id_key, dim):
    """The file's (ids, features), or raises Malformed naming the first malformed line."""
    ids, features = [], []
    try:
        lines = open(path, encoding="utf-8").read().split("\n")
    except OSError as e:
        raise Malformed(f"cannot read it: {e.strerror}")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last row
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except ValueError:
            raise Malformed(f"line {number}: not JSON")
        if not isinstance(row, dict) or set(row) != {id_key, "feature"}:
            raise Malformed(f"line {number}: not {{\"{id_key}\": ..., \"feature\": [...]}}")
        feature = row["feature"]
        if not is_number(row[id_key], int) or not isinstance(feature, list) or len(feature) != dim \
                or not all(is_number(x, (int, float)) for x in feature):
            raise Malformed(f"line {number}: needs an integer {id_key} and {dim} numbers")
        if not all(math.isfinite(x) for x in feature):
            raise Malformed(f"line {number}: a feature value is not finite")
        ids.append(row[id_key])
        features.append(feature)
    return ids, features


def compare(kind, want_ids, expected, path, id_key):
    """The reasons the file at path fails (none when it passes)."""
    try:
        got_ids, got = read_features(path, id_key, expected.shape[1])
    except Malformed as e:
        return [str(e)]
    failures = []
    seen, duplicates = set(), set()
    for i in got_ids:
        (duplicates if i in seen else seen).add(i)
    missing, extra = set(want_ids) - seen, seen - set(want_ids)
    if duplicates or missing or extra:
        failures.append(f"{kind} ids: {len(duplicates)} repeated, {len(missing)} missing, "
                        f"{len(extra)} unknown (e.g. {sorted(duplicates | missing | extra)[:3]})")
    elif got_ids != want_ids:
        failures.append(f"{kind} ids are not in input order")
    row = {i: n for n, i in enumerate(got_ids)}
    common = [n for n, i in enumerate(want_ids) if i in row]
    difference = 0.0
    if common:
        got_rows = torch.tensor([got[row[want_ids[n]]] for n in common], dtype=torch.float64)
        difference = (got_rows - expected[common].double()).abs().max().item()
    print(f"{path}: {len(got_ids)} {kind} features for {len(want_ids)} inputs, "
          f"max abs difference {difference:.3g}")
    if not difference <= TOLERANCE:  # NaN fails too
        failures.append(f"{kind} features differ from the reference by {difference:.3g} > {TOLERANCE}")
    return failures


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("vision", "text", "checkpoint", "inputs"):
        parser.add_argument(name)
    parser.add_argument("features", nargs="+")
    parser.add_argument("--vocab", help="check text features: INPUTS is a {split}_texts.jsonl")
    parser.add_argument("--context-length", type=int, default=52)
    parser.add_argument("--normalize", action="store_true")
    args = parser.parse_args(argv[1:])
    vision, text = json.load(open(args.vision)), json.load(open(args.text))
    model = CLIP(vision, text)
    state = torch.load(args.checkpoint, map_location="cpu")["state_dict"]
    model.load_state_dict({k[len("module."):]: v for k, v in state.items()})
    model.eval()
    if args.vocab:
        kind, id_key = "text", "text_id"
        ids, expected = reference_texts(model, text, args.inputs, args.vocab, args.context_length)
    else:
        kind, id_key = "image", "image_id"
        ids, expected = reference_images(model, vision, args.inputs)
    if args.normalize:
        expected = expected / expected.norm(dim=1, keepdim=True)
    failed = False
    for path in args.features:
        failures = compare(kind, ids, expected, path, id_key)
        for failure in failures:
            print(f"FAIL {path}: {failure}", file=sys.stderr)
        if not failures:
            print(f"ok {path}")
        failed |= bool(failures)
    sys.stdout.flush()
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main(sys.argv)
