# Sourced by the benchmark scripts: `start_record NAME` opens experiments/results/NAME-<date>.jsonl
# (path in $out) with a first line describing the machine; `record COMMAND...` runs a command
# whose last stdout line is JSON and appends {"command": ..., "result": ...}.

start_record() {
  out=experiments/results/$1-$(date +%Y%m%d-%H%M%S).jsonl
  : > "$out"
  python3 - "$out" "${shopclip:-build/shopclip}" <<'PY'
import json, os, platform, subprocess, sys
out, binary = sys.argv[1:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
run = lambda *c: subprocess.run(list(c), capture_output=True, text=True).stdout.strip()
commit = run("git", "rev-parse", "--short", "HEAD")
dirty = run("git", "status", "--porcelain", "--untracked-files=no")
blas = run("sh", "-c", f"ldd {binary} | grep -o '/[^ ]*libblas.so.3'")
mpi = (run("mpirun", "--version").splitlines() or ["?"])[0]
# Settings that choose the kernels of every command in the record.
kernels = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
           if k in os.environ}
with open(out, "a") as f:
    f.write(json.dumps({"machine": {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem / 2**20, 1),
                                    "kernel": platform.release(), "commit": commit + ("+dirty" if dirty else ""),
                                    "blas": blas, "mpi": mpi, "kernel_settings": kernels}}) + "\n")
PY
}

record() {
  local command="$*" result
  echo "+ $command" >&2
  result=$("$@" | tail -n 1)
  python3 -c 'import json,sys; print(json.dumps({"command": sys.argv[1], "result": json.loads(sys.argv[2])}, ensure_ascii=False))' \
    "$command" "$result" >> "$out"
}
