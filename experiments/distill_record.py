#!/usr/bin/env python3
"""Writes issue 13's record (Markdown, stdout) from a finished distill_demo sweep, its teacher run
and the `bench encode` JSON lines of teacher and student (experiments/distill_demo.sh):
the teacher's size and valid MeanRecall, the sweep's table, the share of the teacher-student gap
each configuration closes (with the sweep's paired-bootstrap interval divided by the gap), and
encoding speed of both models with the ratios the issue's goals name.

Usage: distill_record.py SWEEP_DIR TEACHER_RUN ENCODE_JSONL
"""
import csv
import json
import os
import platform
import sys

import yaml


def model_text(model):
    image, text = model["image"], model["text"]
    if image["type"] == "cnn":
        tower = f"CNN widths {image['widths']} at {image['resolution']} px"
    else:
        tower = f"ViT width {image['width']} x {image['layers']} layers"
    return (f"{tower}; text width {text['width']} x {text['layers']} layers, {text['heads']} heads, "
            f"MLP {text['mlp']}; {model['embed_dim']} dimensions")


def main():
    sweep, teacher_run, encode_path = sys.argv[1:4]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "?")
    teacher = json.load(open(os.path.join(teacher_run, "summary.json")))
    teacher_recall = teacher["valid"]["mean_recall"]
    rows = list(csv.DictReader(open(os.path.join(sweep, "results.csv"))))
    baseline = next(r for r in rows if not r["vs_baseline"])
    base_recall = float(baseline["mean_recall"])
    gap = teacher_recall - base_recall
    encodes = [json.loads(l) for l in open(encode_path)]
    machine = encodes[0].get("machine", {})
    teacher_speed, student_speed = (e["result"] for e in encodes[1:3])

    print("# Distillation on the demo dataset (issue 13)\n")
    print(f"Machine: {cpu}, {os.cpu_count()} cores, kernel {platform.release()}"
          f"{', commit ' + machine['commit'] if machine.get('commit') else ''}. "
          f"Command: `experiments/distill_demo.sh` (sweep `{sweep}`, teacher `{teacher_run}`).\n")
    teacher_model = yaml.safe_load(open(os.path.join(teacher_run, "config.yaml")))["model"]
    student_run = student_speed["run"]
    student_model = yaml.safe_load(open(os.path.join(student_run, "config.yaml")))["model"]
    print(f"Teacher `{teacher_run}` ({model_text(teacher_model)}): valid MeanRecall "
          f"**{teacher_recall:.2f}** after {teacher.get('steps', '?')} steps "
          f"in {teacher.get('train_seconds_this_process', 0) / 60:.0f} minutes of training "
          f"({teacher.get('stop_reason', '?')}; {teacher.get('parameters', 0) / 1e6:.2f}M "
          "parameters).\n")
    print(f"Student (every row; `{student_run}`): {model_text(student_model)}.\n")
    print("## The sweep (valid split)\n")
    print(open(os.path.join(sweep, "results.md")).read())
    print("## Share of the teacher-student gap closed\n")
    print(f"Gap = teacher {teacher_recall:.2f} - student without a teacher {base_recall:.2f} = "
          f"{gap:.2f} MeanRecall points. Share = (row - baseline) / gap; the interval is the "
          "sweep's paired-bootstrap interval of the difference divided by the gap. Goal: 0.5.\n")
    print("| configuration | MeanRecall | vs baseline | share of gap closed [95 % CI] |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        if not r["vs_baseline"]:
            print(f"| {r['configuration']} | {float(r['mean_recall']):.2f} | baseline | 0 |")
            continue
        d, lo, hi = (float(r[k]) for k in ("vs_baseline", "vs_baseline_ci_low",
                                           "vs_baseline_ci_high"))
        share = (f"{d / gap:+.2f} [{lo / gap:+.2f}, {hi / gap:+.2f}]" if gap > 0 else
                 "no gap: the student matches the teacher")
        print(f"| {r['configuration']} | {float(r['mean_recall']):.2f} | {d:+.2f} | {share} |")
    print("\n## Encoding speed (`shopclip bench encode`, random inputs of the models' shapes)\n")
    print("| model | image tower parameters | text tower parameters | MFLOP per image | "
          "MFLOP per query | images/s | queries/s | one query alone, ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, s in (("teacher", teacher_speed), ("student", student_speed)):
        print(f"| {name} (`{s['run']}`) | {s['image_parameters'] / 1e6:.2f}M | "
              f"{s['text_parameters'] / 1e6:.2f}M | {s['image_mflop']:.1f} | {s['query_mflop']:.1f} | "
              f"{s['images_per_s']:.0f} | {s['queries_per_s']:.0f} | {s['single_query_ms']:.2f} |")
    print(f"\nBatch {teacher_speed['batch']}, {teacher_speed['threads']} threads; matrix-product "
          f"rate {teacher_speed['matmul_gflops']:.1f} GFLOP/s in the teacher's run, "
          f"{student_speed['matmul_gflops']:.1f} in the student's.")
    ratio = lambda key: teacher_speed[key] and student_speed[key] / teacher_speed[key]  # noqa
    print(f"Student / teacher: queries/s x{ratio('queries_per_s'):.2f}, images/s "
          f"x{ratio('images_per_s'):.2f}; one query alone "
          f"x{teacher_speed['single_query_ms'] / student_speed['single_query_ms']:.2f} faster; "
          f"FLOPs per query x{teacher_speed['query_mflop'] / student_speed['query_mflop']:.2f} "
          f"fewer, per image x{teacher_speed['image_mflop'] / student_speed['image_mflop']:.2f} "
          "fewer. Goal: queries at least 5x faster.")


if __name__ == "__main__":
    main()
