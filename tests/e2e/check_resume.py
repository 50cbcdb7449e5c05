#!/usr/bin/env python3
"""Checks that a paused-then-resumed run really resumed, from its own files.

Training is deterministic, so a `--resume` that silently restarted from step 0 would end with the
same weights as an uninterrupted run; weights alone cannot tell. This reads what the resumed
process wrote and requires:
  - log.txt: "resumed from .../last.pt: epoch E step PAUSED";
  - metrics.jsonl: exactly one {"type": "resume"} row, at step PAUSED (with the given number of
    processes); train rows strictly increasing in step over the whole file (a restart would write
    the early steps again), those before the resume row at or below PAUSED, those after above it;
  - summary.json: first_step_this_process == PAUSED, steps == TOTAL and
    steps_this_process == TOTAL - PAUSED (the resumed process trained, and was timed on, the
    remaining steps only).

Usage: check_resume.py RUN_DIR PAUSED_STEP TOTAL_STEPS [PROCESSES]
"""
import json
import re
import sys


def main():
    run_dir, paused, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    processes = int(sys.argv[4]) if len(sys.argv) > 4 else None
    problems = []

    log = open(f"{run_dir}/log.txt", encoding="utf-8").read()
    resumed = re.findall(r"resumed from \S+: epoch \d+ step (\d+)", log)
    if resumed != [str(paused)]:
        problems.append(f"log.txt: expected one 'resumed from ... step {paused}', found {resumed}")

    rows = [json.loads(line) for line in open(f"{run_dir}/metrics.jsonl", encoding="utf-8")]
    resume_at = [i for i, row in enumerate(rows) if row["type"] == "resume"]
    if len(resume_at) != 1:
        problems.append(f"metrics.jsonl: expected one resume row, found {len(resume_at)}")
    else:
        row = rows[resume_at[0]]
        if row["step"] != paused:
            problems.append(f"metrics.jsonl: resume row at step {row['step']}, expected {paused}")
        if processes is not None and row["processes"] != processes:
            problems.append(f"metrics.jsonl: resumed with {row['processes']} processes, "
                            f"expected {processes}")
        before = [r["step"] for r in rows[: resume_at[0]] if r["type"] == "train"]
        after = [r["step"] for r in rows[resume_at[0] + 1:] if r["type"] == "train"]
        if before and max(before) > paused:  # none when the pause came before train.log_every
            problems.append(f"metrics.jsonl: train steps before the resume row: {before}")
        if not after or min(after) <= paused:
            problems.append(f"metrics.jsonl: train steps after the resume row: {after}")
    steps = [r["step"] for r in rows if r["type"] == "train"]
    if any(b <= a for a, b in zip(steps, steps[1:])):
        problems.append(f"metrics.jsonl: train steps not strictly increasing: {steps}")

    summary = json.load(open(f"{run_dir}/summary.json", encoding="utf-8"))
    expected = {"first_step_this_process": paused, "steps": total,
                "steps_this_process": total - paused}
    for key, value in expected.items():
        if summary.get(key) != value:
            problems.append(f"summary.json: {key} is {summary.get(key)}, expected {value}")

    for problem in problems:
        print(f"check_resume: {run_dir}: {problem}", file=sys.stderr)
    if not problems:
        print(f"check_resume: {run_dir} resumed at step {paused} and trained the "
              f"{total - paused} remaining steps")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
