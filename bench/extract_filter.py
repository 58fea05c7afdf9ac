"""Benchmark: gristmill extract + filter against datatrove's equivalent pipeline, same WARCs, same run.

Each pipeline runs as a subprocess; its process tree's memory is sampled every 50 ms (peak RSS of
the largest single process = "per worker", and of the whole tree). Prints docs/s and MB/s per
core and the ratio against datatrove. Run `make -C bench all` (it sets up the peers first).
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "_work"

CONFIG = """release: bench-{extractor}
output: {out}
runner: {{kind: local, workers: {workers}}}
sources:
  - {{name: crawl, paths: ["{input}"], format: warc}}
stages:
  extract: {{extractor: {extractor}}}
  filter:
    url_blocklist: {{enabled: false}}
    language: {{languages: [en], min_score: 0.65}}
    c4: {{filter_no_terminal_punct: false}}   # as FineWeb (and the datatrove run) use it
    pii: {{enabled: false}}                   # datatrove's pipeline has no PII step
"""


def peak_rss(proc: subprocess.Popen) -> tuple[int, int]:
    """Samples until `proc` ends: peak RSS of its largest process and of its whole tree, in bytes."""
    root = psutil.Process(proc.pid)
    peak_proc = peak_tree = 0
    while proc.poll() is None:
        rss = []
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            procs = []
        for child in procs:
            try:
                rss.append(child.memory_info().rss)
            except psutil.Error:  # ended between the listing and the reading
                pass
        if rss:
            peak_proc, peak_tree = max(peak_proc, max(rss)), max(peak_tree, sum(rss))
        time.sleep(0.05)
    return peak_proc, peak_tree


def measure(cmd: list[str], env: dict | None = None) -> dict:
    """Runs cmd; returns wall seconds, peak RSS of the largest process and of the tree, stdout."""
    began = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, **(env or {})}, cwd=ROOT)
    peak_proc, peak_tree = peak_rss(proc)
    out = proc.stdout.read()
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    return {"seconds": time.perf_counter() - began, "peak_rss_worker_mb": peak_proc / 2**20,
            "peak_rss_tree_mb": peak_tree / 2**20, "stdout": out}


def run_gristmill(extractor: str, args) -> dict:
    out = WORK / f"gristmill-{extractor}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    config = WORK / f"gristmill-{extractor}.yaml"
    config.write_text(CONFIG.format(extractor=extractor, out=out, workers=args.workers, input=args.input))
    result = measure([str(ROOT / ".venv/bin/gristmill"), "run", str(config), "--quiet"])
    sys.path.insert(0, str(ROOT))
    from pipelines import stats

    funnel = stats.funnel(str(out))
    return {**result, "docs_read": funnel["records_read"], "docs_kept": funnel["kept"]}


def run_datatrove(args) -> dict:
    out = WORK / "datatrove"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    env = {"HF_HOME": str(WORK / "hf"), "HF_HUB_OFFLINE": "1"}
    result = measure([str(HERE / ".venv-peers/bin/python"), str(HERE / "datatrove_pipeline.py"),
                      "--input", args.input, "--workers", str(args.workers), "--out", str(out)], env)
    counts = json.loads(result["stdout"].strip().splitlines()[-1])
    return {**result, **counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=str(ROOT.parent / "shared/data/crawl-sample/*.warc.gz"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="runs per pipeline; the fastest is kept")
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    files = sorted(glob.glob(args.input))
    mb = sum(os.path.getsize(f) for f in files) / 1e6
    runs = {
        "gristmill (resiliparse)": lambda: run_gristmill("resiliparse", args),
        "gristmill (trafilatura)": lambda: run_gristmill("trafilatura", args),
        "datatrove (trafilatura)": lambda: run_datatrove(args),
    }
    results = {name: min((fn() for _ in range(args.repeat)), key=lambda r: r["seconds"]) for name, fn in runs.items()}
    print(f"input: {len(files)} WARC files, {mb:.1f} MB, workers: {args.workers}, cores: {os.cpu_count()}\n")
    print(f"{'pipeline':<26}{'s':>7}{'docs':>6}{'kept':>6}{'docs/s/core':>13}{'MB/s/core':>11}"
          f"{'RSS/worker MB':>15}{'RSS total MB':>14}")
    for name, r in results.items():
        r["docs_per_s_core"] = r["docs_read"] / r["seconds"] / args.workers
        r["mb_per_s_core"] = mb / r["seconds"] / args.workers
        print(f"{name:<26}{r['seconds']:>7.1f}{r['docs_read']:>6}{r['docs_kept']:>6}{r['docs_per_s_core']:>13.1f}"
              f"{r['mb_per_s_core']:>11.2f}{r['peak_rss_worker_mb']:>15.0f}{r['peak_rss_tree_mb']:>14.0f}")
    peer = results["datatrove (trafilatura)"]["docs_per_s_core"]
    print()
    for name in ("gristmill (resiliparse)", "gristmill (trafilatura)"):
        print(f"ratio {name} / datatrove docs/s per core: {results[name]['docs_per_s_core'] / peer:.2f}x")
    (WORK / "extract_filter.json").write_text(json.dumps(
        {k: {m: v for m, v in r.items() if m != "stdout"} for k, r in results.items()}, indent=2))


if __name__ == "__main__":
    main()
