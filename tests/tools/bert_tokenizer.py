"""BERT tokenization as Chinese-CLIP applies it to queries, written for shopclip's end-to-end test
independently of the C++ tokenizer (data/tokenizer.cpp), on Python's own Unicode tables
(unicodedata, str.lower, str.split):

  BasicTokenizer   drop U+0000, U+FFFD and control characters (Cc, Cf; not \\t \\n \\r), map
                   whitespace (space, \\t, \\n, \\r, Zs) to a space, put spaces around each CJK
                   ideograph, split on whitespace, then per word: lower-case, NFD and drop Mn
                   (accent stripping), split off every punctuation character (ASCII symbols and
                   Unicode P*), and split on whitespace again.
  WordPiece        greedy longest match from the left, continuation pieces prefixed "##"; the
                   whole word is [UNK] when some position has no piece or the word is longer
                   than max_chars code points.
  encode           [CLS] ids[:context_length - 2] [SEP], zero-padded to context_length.

max_chars: 200 code points, as in Google's BERT and Chinese-CLIP's bert_tokenizer.py (and
shopclip's tokenizer); Hugging Face's BERT tokenizer uses 100.
"""
import unicodedata

MAX_CHARS = 200

# The CJK blocks of BERT's Chinese-character test (not Hangul, kana or CJK punctuation).
CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def is_cjk(ch):
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def is_space(ch):
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def is_control(ch):
    return ch not in "\t\n\r" and unicodedata.category(ch) in ("Cc", "Cf")


def is_punct(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True  # every ASCII non-alphanumeric symbol, "$", "^" and "`" included
    return unicodedata.category(ch).startswith("P")


def load_vocab(path):
    """token -> id, id = line index; each line stripped as Python's str.strip() does (the real
    vocab.txt has lines "\\u2028" and "##\\u2028", which become "" and "##")."""
    vocab = {}
    with open(path, encoding="utf-8") as f:  # universal newlines, like Chinese-CLIP's readline
        for index, line in enumerate(f):
            vocab[line.strip()] = index
    return vocab


def basic_tokenize(text, lower_case=True):
    cleaned = []
    for ch in text:
        if ch in ("\0", "\ufffd") or is_control(ch):
            continue
        if is_space(ch):
            cleaned.append(" ")
        elif is_cjk(ch):
            cleaned.append(" " + ch + " ")
        else:
            cleaned.append(ch)
    pieces = []
    for word in "".join(cleaned).split():
        if lower_case:
            word = "".join(c for c in unicodedata.normalize("NFD", word.lower())
                           if unicodedata.category(c) != "Mn")
        current = ""
        for ch in word:
            if is_punct(ch):
                if current:
                    pieces.append(current)
                pieces.append(ch)
                current = ""
            else:
                current += ch
        if current:
            pieces.append(current)
    return " ".join(pieces).split()


def wordpiece(word, vocab, max_chars=MAX_CHARS):
    out = []
    for w in word.split():
        if len(w) > max_chars:
            out.append("[UNK]")
            continue
        found, start = [], 0
        while start < len(w):
            prefix = "##" if start else ""
            end = next((e for e in range(len(w), start, -1) if prefix + w[start:e] in vocab), None)
            if end is None:
                found = ["[UNK]"]
                break
            found.append(prefix + w[start:end])
            start = end
        out.extend(found)
    return out


def tokenize(text, vocab, lower_case=True, max_chars=MAX_CHARS):
    return [p for w in basic_tokenize(text, lower_case) for p in wordpiece(w, vocab, max_chars)]


def encode(text, vocab, context_length, lower_case=True, max_chars=MAX_CHARS):
    ids = [vocab[p] for p in tokenize(text, vocab, lower_case, max_chars)][:context_length - 2]
    ids = [vocab["[CLS]"]] + ids + [vocab["[SEP]"]]
    return ids + [0] * (context_length - len(ids))
