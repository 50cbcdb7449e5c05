#!/usr/bin/env python3
"""Checks the folder contract on every project #include (README, "Architecture").

A file may include headers of its own folder and of the folders listed for it below; anything
else is a layering error (a cycle in the making). The CMake libraries link the same way, but a
header-only include would slip past the linker: this check reads the sources.

Usage: layering.py SOURCE_DIR        exit 0 when every include is allowed, 1 listing the others
"""
import os
import re
import sys

# folder -> the project folders its files may include (its own folder is always allowed)
ALLOWED = {
    "data": [],
    "dist": [],
    "core": ["data", "dist"],
    "core/model": ["core", "data", "dist"],
    "core/eval": ["core/model", "core", "data", "dist"],
    "core/train": ["core/eval", "core/model", "core", "data", "dist"],
    "core/report": ["core/eval", "core/model", "core", "data", "dist"],
    "core/serve": ["core/eval", "core/model", "core", "data", "dist"],
    "launch": ["core/train", "core/report", "core/serve", "core/eval", "core/model", "core", "data", "dist"],
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def folder_of(path):
    return os.path.dirname(path)


def main():
    root = sys.argv[1]
    problems = []
    checked = 0
    for folder, allowed in ALLOWED.items():
        directory = os.path.join(root, folder)
        for name in sorted(os.listdir(directory)):
            if not name.endswith((".h", ".cpp")):
                continue
            source = f"{folder}/{name}"
            checked += 1
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    match = INCLUDE.match(line)
                    if not match or "/" not in match.group(1):
                        continue  # generated headers (shopclip_build_config.h) and the like
                    target = folder_of(match.group(1))
                    if target not in ALLOWED:
                        problems.append(f"{source}:{number}: includes {match.group(1)} from "
                                        f"unknown folder {target}/")
                    elif target != folder and target not in allowed:
                        problems.append(f"{source}:{number}: {folder}/ may not include "
                                        f"{match.group(1)} (allowed: {', '.join(allowed) or 'none'})")
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"layering: {checked} files, {len(problems)} disallowed includes")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
