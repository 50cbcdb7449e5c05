#!/usr/bin/env python3
"""The text tower's matrix products on OpenBLAS and on oneDNN (issue 19, core/model/linear.h).

For bench_small's text layer (rows = 256 queries x 18 tokens, width 256, MLP 1024) each linear
layer's three products -- forward x W^T, input gradient dY W, weight gradient dY^T X -- timed
on LibTorch's torch.mm (OpenBLAS) and on oneDNN's dnnl_sgemm (libdnnl.so.2, called through
ctypes with the same row-major arguments shopclip passes), each checked against torch.mm, plus
the square 2048 product of each. Prints a Markdown table (GFLOP/s per shape, ms per layer).

Run it as shopclip runs: OpenMP OpenBLAS and tcmalloc, e.g.
  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp \\
  LD_PRELOAD=libtcmalloc_minimal.so.4 /usr/bin/python3 experiments/gemm_shapes.py
OPENBLAS_CORETYPE and ONEDNN_MAX_CPU_ISA choose the kernels as for shopclip.
"""
import ctypes
import os
import platform
import time

import torch

ROWS = 256 * 18
# name, m, n, k, A transposed, B transposed (row-major C[m, n] = op(A) op(B)).
SHAPES = [("2048 square", 2048, 2048, 2048, False, False)]
for layer, out, width in [("qkv", 768, 256), ("out", 256, 256), ("fc1", 1024, 256),
                          ("fc2", 256, 1024)]:
    SHAPES += [(f"{layer} forward", ROWS, out, width, False, True),
               (f"{layer} input gradient", ROWS, width, out, False, False),
               (f"{layer} weight gradient", out, width, ROWS, True, False)]

dnnl = ctypes.CDLL("libdnnl.so.2")
dnnl.dnnl_sgemm.argtypes = [ctypes.c_char, ctypes.c_char] + [ctypes.c_int64] * 3 + [
    ctypes.c_float, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
    ctypes.c_float, ctypes.c_void_p, ctypes.c_int64]


def seconds_per_call(fn, min_seconds=0.5):
    for _ in range(3):
        fn()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        fn()
        calls += 1
    return (time.perf_counter() - start) / calls


def measure(m, n, k, trans_a, trans_b):
    a = torch.randn(k, m) if trans_a else torch.randn(m, k)  # storage, row-major
    b = torch.randn(n, k) if trans_b else torch.randn(k, n)
    left, right = (a.t() if trans_a else a), (b.t() if trans_b else b)
    c = torch.empty(m, n)

    def onednn():
        status = dnnl.dnnl_sgemm(b"T" if trans_a else b"N", b"T" if trans_b else b"N", m, n, k,
                                 1.0, a.data_ptr(), a.size(1), b.data_ptr(), b.size(1), 0.0,
                                 c.data_ptr(), n)
        assert status == 0, status

    onednn()
    expected = torch.mm(left, right)
    assert torch.allclose(c, expected, rtol=1e-3, atol=1e-3), "dnnl_sgemm disagrees with torch.mm"
    flop = 2.0 * m * n * k
    openblas_s = seconds_per_call(lambda: torch.mm(left, right))
    onednn_s = seconds_per_call(onednn)
    return flop / openblas_s / 1e9, flop / onednn_s / 1e9, openblas_s, onednn_s


def main():
    # All cores, as shopclip's run.threads = 0 (python3-torch's own default was 1 thread here).
    torch.set_num_threads(os.cpu_count())
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "?")
    kernels = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "ONEDNN_MAX_CPU_ISA")
               if k in os.environ}
    print("# Text-tower matrix products: OpenBLAS against oneDNN\n")
    print(f"Machine: {cpu}, {os.cpu_count()} cores, kernel {platform.release()}; torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; kernel settings: "
          f"{kernels or 'none (each library picks its own)'}.\n")
    print("| product | m x n x k | OpenBLAS GFLOP/s | oneDNN GFLOP/s |")
    print("| --- | --- | --- | --- |")
    layer_ms = [0.0, 0.0]
    for name, m, n, k, trans_a, trans_b in SHAPES:
        openblas, onednn, openblas_s, onednn_s = measure(m, n, k, trans_a, trans_b)
        if name != "2048 square":
            layer_ms[0] += 1000 * openblas_s
            layer_ms[1] += 1000 * onednn_s
        print(f"| {name} | {m} x {n} x {k} | {openblas:.0f} | {onednn:.0f} |")
    print(f"\nOne text layer's twelve products: OpenBLAS {layer_ms[0]:.1f} ms, oneDNN "
          f"{layer_ms[1]:.1f} ms.")


if __name__ == "__main__":
    main()
