#!/usr/bin/env python3
"""Convert a Chinese-CLIP checkpoint (a torch.save file) into safetensors, which shopclip reads.

LibTorch 1.13 cannot unpickle an ordinary torch.save checkpoint, so the weights cross over in
the safetensors format (8-byte header length, JSON header, raw little-endian data).

Usage: convert_chinese_clip.py CHECKPOINT.pt OUT.safetensors

Accepts a bare state_dict or Chinese-CLIP's training checkpoint ({"epoch", "step", "name",
"state_dict", "optimizer"}); keeps the state_dict only, drops a leading "module." (from
DistributedDataParallel) from every key and stores float16/bfloat16 weights as float32.
Needs PyTorch (Debian: python3-torch) to read the checkpoint.
"""
import json
import struct
import sys

DTYPE_NAMES = {"float32": "F32", "float64": "F64", "float16": "F16", "bfloat16": "BF16",
               "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8",
               "bool": "BOOL"}


def write_safetensors(path, tensors, metadata=None):
    """tensors: name -> torch.Tensor. Written in name order, data 8-byte aligned."""
    import torch
    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        dtype = DTYPE_NAMES.get(str(t.dtype).replace("torch.", ""))
        if dtype is None:
            raise SystemExit(f"{path}: tensor {name!r} has unsupported dtype {t.dtype}")
        if t.dtype == torch.bfloat16:
            data = t.view(torch.int16).numpy().tobytes()
        else:
            data = t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(text)))
        out.write(text)
        for chunk in chunks:
            out.write(chunk)


def extract_state_dict(checkpoint, source):
    import torch
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state:
        raise SystemExit(f"{source}: no state_dict found (keys: {list(checkpoint)[:10] if isinstance(checkpoint, dict) else type(checkpoint).__name__})")
    out = {}
    for key, value in state.items():
        if not torch.is_tensor(value):
            raise SystemExit(f"{source}: entry {key!r} of the state_dict is not a tensor")
        name = key[len("module."):] if key.startswith("module.") else key
        if value.dtype in (torch.float16, torch.bfloat16):
            value = value.float()
        out[name] = value
    return out


def main(argv):
    if len(argv) != 3:
        raise SystemExit(__doc__)
    import torch
    source, target = argv[1], argv[2]
    try:
        checkpoint = torch.load(source, map_location="cpu")
    except Exception as error:  # a clear message instead of a pickle traceback
        raise SystemExit(f"{source}: cannot be read as a PyTorch checkpoint: {error}")
    state = extract_state_dict(checkpoint, source)
    metadata = {"source": source, "format": "chinese-clip-state-dict"}
    if isinstance(checkpoint, dict):
        for key in ("epoch", "step", "name"):
            if key in checkpoint:
                metadata[key] = checkpoint[key]
    write_safetensors(target, state, metadata)
    print(f"{target}: {len(state)} tensors from {source}")


if __name__ == "__main__":
    main(sys.argv)
