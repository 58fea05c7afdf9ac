"""Benchmark: gristmill dedup against datatrove's MinHash pipeline and datasketch, same text, same run.

Input: the extracted text of the crawl sample (1x), and k x (k - 1 more copies, each document with
one word replaced: near duplicates). Same parameters everywhere: word 5-grams, 112 permutations,
14 bands x 8 rows; gristmill at its defaults (verified candidates, anchored clusters). Prints docs/s
per core, peak RSS, kept documents and the ratios, then gristmill's wall and peak RSS per phase
(from its run log: the largest task's peak).
"""

import argparse
import json
import random
import subprocess
import sys
from functools import partial

from extract_filter import HERE, ROOT, WORK, measure
from runner_scaling import phase_walls

sys.path.insert(0, str(ROOT))
from pipelines import stats  # noqa: E402

SOURCE = """release: dedup-src
output: {out}
runner: {{kind: local, workers: 2}}
sources: [{{name: crawl, paths: ["{input}"], format: warc}}]
stages: {{extract: {{}}}}
"""
DEDUP = """release: dedup-bench
output: {out}
runner: {{kind: local, workers: {workers}}}
sources: [{{name: docs, paths: ["{corpus}/*.jsonl"], format: jsonl}}]
stages: {{dedup: {{}}}}
"""


def corpus(args, copies: int):
    src = WORK / "dedup-src"
    if not (src / "manifest.json").exists():
        (WORK / "dedup-src.yaml").write_text(SOURCE.format(out=src, input=args.input))
        subprocess.run([str(ROOT / ".venv/bin/gristmill"), "run", str(WORK / "dedup-src.yaml"), "--quiet"],
                       check=True, capture_output=True, cwd=ROOT)
    docs = stats.connect(str(src)).execute("SELECT id, text FROM docs_extract ORDER BY id").fetchall()
    folder = WORK / f"dedup-corpus-{copies}x"
    folder.mkdir(exist_ok=True)
    rng = random.Random(copies)
    files = [open(folder / f"part-{i}.jsonl", "w") for i in range(args.workers)]
    for k in range(copies):
        for n, (doc_id, text) in enumerate(docs):
            words = text.split()
            if k and words:
                words[rng.randrange(len(words))] = "perturbed"
            files[n % len(files)].write(json.dumps({"id": f"{k}/{doc_id}", "text": " ".join(words)}) + "\n")
    for f in files:
        f.close()
    return folder, copies * len(docs)


def run_gristmill(folder, workers):
    out = WORK / f"dedup-out-{folder.name}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    config = WORK / f"{out.name}.yaml"
    config.write_text(DEDUP.format(out=out, workers=workers, corpus=folder))
    result = measure([str(ROOT / ".venv/bin/gristmill"), "run", str(config), "--quiet"])
    return {**result, "kept": stats.funnel(str(out))["kept"], "phases": phases(out)}


def phases(out) -> dict:
    """Per phase of the run: its wall seconds and the peak RSS (MB) of its largest task."""
    walls, _, _ = phase_walls(out)
    log = json.loads(max((out / "_logs").glob("run-*.json")).read_text())
    rss = {}
    for r in log["reports"]:
        name = r["phase"].split(": ", 1)[1]
        rss[name] = max(rss.get(name, 0), r["peak_rss_mb"])
    return {name: (wall, rss[name]) for name, wall in walls.items()}


def run_datatrove(folder, workers):
    out = WORK / f"dedup-datatrove-{folder.name}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    result = measure([str(HERE / ".venv-peers/bin/python"), str(HERE / "datatrove_minhash.py"), "--input",
                      str(folder), "--workers", str(workers), "--out", str(out)])
    return {**result, "kept": json.loads(result["stdout"].strip().splitlines()[-1])["docs_kept"]}


def datasketch_main(folder: str) -> None:
    """datasketch MinHash + MinHashLSH (one process), shingled like gristmill; prints kept documents."""
    from datasketch import MinHash, MinHashLSH

    from pipelines.dedup.minhash import normalize

    lsh = MinHashLSH(num_perm=112, params=(14, 8))
    parent = {}
    for path in sorted(__import__("pathlib").Path(folder).glob("*.jsonl")):
        for line in open(path):
            doc = json.loads(line)
            words = normalize(doc["text"]).split()
            if not words:
                continue
            n = min(5, len(words))
            shingles = {" ".join(words[i:i + n]).encode() for i in range(len(words) - n + 1)}
            m = MinHash(num_perm=112, seed=1)
            m.update_batch(list(shingles))
            found = lsh.query(m)
            parent[doc["id"]] = min(found) if found else doc["id"]
            lsh.insert(doc["id"], m)
    print(json.dumps({"kept": sum(1 for k, v in parent.items() if k == v)}))


def run_datasketch(folder):
    result = measure([str(ROOT / ".venv/bin/python"), __file__, "--datasketch", str(folder)])
    return {**result, "kept": json.loads(result["stdout"].strip().splitlines()[-1])["kept"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=str(ROOT.parent / "shared/data/crawl-sample/*.warc.gz"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 4, 16],
                        help="input sizes, in copies of the sample")
    parser.add_argument("--datatrove-max-copies", type=int, default=4,
                        help="datatrove only up to this size (its rate is flat; 16x would take ~10 min)")
    parser.add_argument("--datasketch", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.datasketch:
        return datasketch_main(args.datasketch)
    WORK.mkdir(exist_ok=True)
    print(f"{'input':<8}{'tool':<22}{'s':>7}{'docs':>7}{'kept':>7}{'docs/s/core':>13}{'RSS/proc MB':>13}")
    results = {}
    for copies in args.copies:
        folder, n_docs = corpus(args, copies)
        runs = {"gristmill": partial(run_gristmill, folder, args.workers),
                "datatrove": partial(run_datatrove, folder, args.workers),
                "datasketch (1 proc)": partial(run_datasketch, folder)}
        if copies > args.datatrove_max_copies:
            del runs["datatrove"]
        for tool, fn in runs.items():
            r = fn()
            cores = 1 if tool.startswith("datasketch") else args.workers
            r["docs_per_s_core"] = n_docs / r["seconds"] / cores
            results[(copies, tool)] = r
            print(f"{copies}x{'':<6}{tool:<22}{r['seconds']:>7.1f}{n_docs:>7}{r['kept']:>7}"
                  f"{r['docs_per_s_core']:>13.1f}{r['peak_rss_worker_mb']:>13.0f}")
    for copies in args.copies:
        phases = results[(copies, "gristmill")]["phases"]
        print(f"{copies}x gristmill phases: "
              + ", ".join(f"{p} {wall:.1f}s {rss:.0f} MB" for p, (wall, rss) in phases.items()))
    for copies in args.copies:  # targets: >= 3x datatrove, within 1.3x of datasketch (docs/s per core)
        g = results[(copies, "gristmill")]["docs_per_s_core"]
        line = f"{copies}x: gristmill docs/s per core"
        for tool, target in (("datatrove", 3.0), ("datasketch (1 proc)", 1 / 1.3)):
            if (copies, tool) in results:
                ratio = g / results[(copies, tool)]["docs_per_s_core"]
                line += f", / {tool.split()[0]} {ratio:.2f}x ({'meets' if ratio >= target else 'BELOW'} {target:.2f}x)"
        print(line)
    first, last = args.copies[0], args.copies[-1]
    growth = results[(last, "gristmill")]["seconds"] / results[(first, "gristmill")]["seconds"]
    print(f"gristmill time {first}x -> {last}x input: x{growth:.2f}")

if __name__ == "__main__":
    main()
