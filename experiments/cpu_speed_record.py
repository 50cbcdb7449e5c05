#!/usr/bin/env python3
"""Markdown record of experiments/cpu_speed.sh (stdout): each training figure against the
matrix-product rate of its own run and against the plain PyTorch loop of the same session, then
each operator profile: the largest operators and the step's time by kind of work.

Usage: cpu_speed_record.py CPU_SPEED_JSONL
"""
import json
import re
import sys

# Kinds of work, first match wins (operator names as LibTorch's profiler gives them; self time).
KINDS = [
    ("convolution backward", r"convolution_backward|ConvolutionBackward"),
    ("convolution forward", r"convolution"),
    ("matrix products", r"aten::(mm|addmm|bmm|baddbmm|_mkl_linear|matmul|linear)$|onednn_sgemm|MmBackward|"
                        r"AddmmBackward|BmmBackward"),
    ("BatchNorm", r"batch_norm|BatchNorm"),
    ("ReLU / GELU", r"threshold|relu|gelu|Relu|Gelu|Threshold"),
    ("softmax / LayerNorm", r"softmax|layer_norm|Softmax|LayerNorm"),
    ("copies, concatenation, layout", r"copy_|contiguous|aten::cat|clone|aten::to$|_to_copy|"
                                      r"CatBackward|mkldnn_reorder|to_dense"),
    ("optimizer and other element-wise", r"add|mul|div|sub|sqrt|addcmul|addcdiv|lerp|foreach|"
                                         r"fill_|zero_|clamp|exp|sum|mean|norm|pow|rsqrt"),
]


def kind_of(name):
    for kind, pattern in KINDS:
        if re.search(pattern, name):
            return kind
    return "other"


def label(command):
    parts = []
    if "torch_bench.py" in command:
        kernels = re.search(r"OPENBLAS_CORETYPE=(\S+)", command)
        return ("plain PyTorch loop (torch_bench.py --small, same architecture), " +
                (f"OPENBLAS_CORETYPE={kernels.group(1)}" if kernels else "default environment"))
    if not command.startswith("build/"):  # BEFORE=<older binary>: its own defaults
        return f"bench_small (CNN), before: `{command.split()[0]}` with its default layout"
    if "model.image.type=vit" in command:
        parts.append("ViT tower (patch 8, width 256, 4 layers)")
    else:
        parts.append("bench_small (CNN)")
        # channels-last is the default since commit 81fb4b3.
        parts.append("[B, C, H, W] layout" if "channels_last=false" in command
                     else "channels-last")
    tokens = re.search(r"--query-tokens (\d+)", command)
    parts.append(f"queries of {tokens.group(1) if tokens else 18} tokens" +
                 (" (padding trimmed)" if not tokens or int(tokens.group(1)) < 32 else
                  ", all 32 computed as in the PyTorch loop"))
    return ", ".join(parts)


def main():
    lines = [json.loads(l) for l in open(sys.argv[1])]
    machine = lines[0]["machine"]
    runs = lines[1:]
    loops = [r for r in runs if r["result"].get("bench") == "torch_small"]
    torch_rate = loops[0]["result"]["samples_per_s"] if loops else None  # as a user runs it
    same_kernels = next((r["result"]["samples_per_s"] for r in loops
                         if "OPENBLAS_CORETYPE" in r["command"]), None)
    print("# CPU training speed (issue 19)\n")
    print(f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
          f"kernel {machine['kernel']}, commit {machine['commit']}, BLAS {machine['blas']}. "
          f"Record: `{sys.argv[1]}` (every command below, in order, one session).\n")
    settings = machine.get("kernel_settings")
    if settings:  # cpu_speed.sh KERNELS=...: exported for every command, the loops included
        print("Every command ran with " + ", ".join(f"`{k}={v}`" for k, v in settings.items()) +
              " in its environment (the loop 'as run by default' too).\n")
    print("| configuration | samples/s | step ms | model GFLOP/s | share of the matrix-product "
          "rate (same run) | vs the PyTorch loop as run by default | vs the loop with the same "
          "OpenBLAS kernels |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    ratio = lambda rate, base: f"{rate / base:.2f}x" if base else ""  # noqa: E731
    for r in runs:
        res = r["result"]
        if res.get("bench") == "torch_small":
            print(f"| {label(r['command'])} | {res['samples_per_s']:.1f} | {res['step_ms']:.0f} | "
                  f"| | {ratio(res['samples_per_s'], torch_rate)} | "
                  f"{ratio(res['samples_per_s'], same_kernels)} |")
            continue
        print(f"| {label(r['command'])} | {res['samples_per_s']:.1f} | {res['step_ms']:.0f} | "
              f"{res['model_gflops']:.1f} | {100 * res['share_of_matmul']:.1f} % of "
              f"{res['matmul_gflops']:.1f} | {ratio(res['samples_per_s'], torch_rate)} | "
              f"{ratio(res['samples_per_s'], same_kernels)} |")
    print("\nCommands:\n")
    for r in runs:
        print(f"- `{r['command']}`")
    for r in runs:
        profile = r["result"].get("profile")
        if not profile:
            continue
        steps, window = profile["steps"], profile["window_ms"]
        print(f"\n## Profile: {label(r['command'])}\n")
        print(f"{steps} steps after the timed ones, {window / steps:.0f} ms per step under the "
              f"profiler; operators' self time {100 * profile['operator_ms'] / window:.1f} % of it.\n")
        kinds = {}
        for op in profile["operators"]:
            kinds[kind_of(op["name"])] = kinds.get(kind_of(op["name"]), 0) + op["self_ms"]
        print("| kind of work | ms per step | share of step |")
        print("| --- | --- | --- |")
        for kind, ms in sorted(kinds.items(), key=lambda item: -item[1]):
            print(f"| {kind} | {ms / steps:.1f} | {100 * ms / window:.1f} % |")
        outside = window - profile["operator_ms"]
        print(f"| outside operators | {outside / steps:.1f} | {100 * outside / window:.1f} % |")
        print("\n| operator | self ms / step | share | calls / step |")
        print("| --- | --- | --- | --- |")
        for op in profile["operators"][:15]:
            print(f"| `{op['name']}` | {op['self_ms'] / steps:.1f} | "
                  f"{100 * op['self_ms'] / window:.1f} % | {op['calls'] / steps:g} |")


if __name__ == "__main__":
    main()
