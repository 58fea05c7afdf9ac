"""Scale benchmark of the global steps (issue 19): synthetic feature, embedding, signature and band-key
tables for N documents, written directly in the schemas the map tasks write (no text, no map step),
with planted structure whose answer is known; then the real global tasks run over them, each phase in
its own subprocess under a memory cap:

  mixture plan          MixturePlanTask, DataMan-style: strata [source], 10 % of documents excluded
                        by `where`, budget = half the candidate tokens (answer: selected tokens within
                        1 % of the budget, every document has a selection row)
  mixture kmeans        KmeansTask, `climb: {clusters: K}`: centroids trained on a seeded sample of
                        train_sample (100,000) embeddings (float16 x 256, K planted clusters)
  mixture assign        the AssignTask of every part in turn (seconds: all of them; peak RSS: the
                        largest task): each document's nearest centroid
  mixture plan (climb)  MixturePlanTask with that `climb` and no `search`: per-cluster aggregates, a
                        few documents per cluster, strata = clusters (answer: budget within 1 %;
                        k-means purity against the planted labels is shown)
  dedup reduce          the `buckets` DedupGlobalTask(bucket=b) in turn (seconds: all of them; peak RSS:
                        the largest task)
  dedup cluster         DedupGlobalTask(bucket=None), anchored, keep first_id (answer: the removed
                        documents and their duplicate_of are exactly the planted ones)

Planted duplicates: 1 % of the documents in groups of 2-5 spread over all parts; half the groups are
exact copies (same exact key and the same 14 band keys), half near duplicates (own exact keys, 3 of 14
band keys shared, identical shingles so verification passes). Other documents have random keys.

    .venv/bin/python bench/scale.py                          # N = 1e5, 1e6, 1e7 (stops growing N after a failure)
    .venv/bin/python bench/scale.py --sizes 1e5 --parts 16   # quick
Options: --sizes, --parts (64), --memory-limit (1GB: the global steps' DuckDB memory_limit), --duplicates
(0.01: the share of documents in planted duplicate groups), --mem-gb
(12: RLIMIT_AS of each phase's process, and it is killed when its RSS passes this), --timeout (480 s per
phase), --phases, --work (bench/_work/scale). Results also
go to bench/_work/scale.json.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SOURCES = ["web", "news", "code", "forum"]
K = 16  # planted embedding clusters = k-means k
DIM = 256  # EmbedConfig.dim default (hashed)
TEXT_ROWS = 200  # documents per part with a (short) text, for the top terms of the CLIMB plan
UPSTREAM = "filter"  # the stage the plan reads texts from
PHASES = ["mixture plan", "mixture kmeans", "mixture assign", "mixture plan (climb)", "dedup reduce", "dedup cluster"]


def doc_id(i: int) -> str:
    return f"d{i:010d}"


def part_name(p: int) -> str:
    return f"part-{p:05d}"


def bounds(n: int, parts: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, n, parts + 1).astype(np.int64)
    return [(int(edges[p]), int(edges[p + 1])) for p in range(parts)]


def shards(out: str, parts: int):
    from pipelines.readers import SourceConfig
    from pipelines.shard_task import ShardTask

    source = SourceConfig(name="synthetic", paths=["synthetic.parquet"], format="parquet")
    return [ShardTask(part_name(p), source, f"synthetic-{p}.parquet", 0, (), out) for p in range(parts)]


# ---------------------------------------------------------------- planted answers

def planted_groups(n: int, seed: int = 7) -> list[np.ndarray]:
    """Groups of 2-5 global document indices (sizes 2, 3, 4, 5 in turn), --duplicates (1 %) of the documents
    in all."""
    rng = np.random.default_rng(seed)
    members = rng.choice(n, int(n * float(os.environ.get("SCALE_DUPLICATES", "0.01"))), replace=False)
    groups, at, size = [], 0, 2
    while at + size <= len(members):
        groups.append(np.sort(members[at:at + size]))
        at += size
        size = 2 + (size - 1) % 4  # 2, 3, 4, 5, 2, ...
    return groups


def exact_kind(g):
    """Group g holds exact copies (else near duplicates): every size comes in both kinds."""
    return (g // 4) % 2 == 0


def planted_label(index: np.ndarray) -> np.ndarray:
    return (index * 2654435761 >> 7) % K


def doc_tokens(index: np.ndarray) -> np.ndarray:
    return 50 + (index * 40503 >> 3) % 1950


def doc_excluded(index: np.ndarray) -> np.ndarray:
    return (index * 2654435761 % 1000003) % 10 == 0  # 10 %


# ---------------------------------------------------------------- synthetic inputs

def generate(out: str, n: int, parts: int, buckets: int) -> dict:
    from pipelines.dedup.tasks import BAND_SCHEMA, EXACT_BAND, SIG_SCHEMA
    from pipelines.mixture.sampling import seeded_keys
    from pipelines.mixture.tasks import EMBEDDING_SCHEMA, FEATURE_SCHEMA
    from pipelines.stage import bucket_name

    rng = np.random.default_rng(1)
    centroids = rng.normal(0, 1, (K, DIM)).astype(np.float32)
    groups = planted_groups(n)
    group_of = np.full(n, -1, dtype=np.int64)
    for g, members in enumerate(groups):
        group_of[members] = g
    group_keys = rng.integers(0, 2**63, (len(groups), 15), dtype=np.uint64) * 2 + 1  # col 0: exact, 1..14: bands
    group_shingles = np.sort(rng.integers(0, 2**63, (len(groups), 20), dtype=np.uint64), axis=1)  # sorted, as the map
    bands = 14
    for p, (a, b) in enumerate(bounds(n, parts)):
        part = part_name(p)
        index = np.arange(a, b, dtype=np.int64)
        ids = pa.array([doc_id(i) for i in range(a, b)], pa.string())
        m = b - a
        tokens = doc_tokens(index)
        excluded = np.where(doc_excluded(index), "where.dataman_overall", None)
        features = pa.table({"id": ids, "part": pa.array([part] * m), "source": pa.array(
            np.array(SOURCES)[index % len(SOURCES)]), "domain": pa.array([f"site{i % 1000}.example" for i in
                                                                          index.tolist()]),
            "tokens": pa.array(tokens, pa.int64()), "excluded_by": pa.array(excluded.tolist(), pa.string()),
            "order_score": pa.nulls(m, pa.float64()), "quality": pa.nulls(m, pa.float64()),
            "tiebreak": seeded_keys(ids.to_pylist(), 0)}, schema=FEATURE_SCHEMA)
        os.makedirs(f"{out}/mixture/_features", exist_ok=True)
        pq.write_table(features, f"{out}/mixture/_features/{part}.parquet")
        prng = np.random.default_rng(1000 + p)
        vectors = centroids[planted_label(index)] + prng.normal(0, 0.15, (m, DIM)).astype(np.float32)
        blob = vectors.astype("<f2").tobytes()
        width = DIM * 2
        embeddings = pa.table({"id": ids, "embedding": pa.Array.from_buffers(
            pa.binary(), m, [None, pa.py_buffer((np.arange(m + 1, dtype=np.int32) * width).tobytes()),
                             pa.py_buffer(blob)])}, schema=EMBEDDING_SCHEMA)
        os.makedirs(f"{out}/mixture/_embeddings", exist_ok=True)
        pq.write_table(embeddings, f"{out}/mixture/_embeddings/{part}.parquet")
        os.makedirs(f"{out}/{UPSTREAM}", exist_ok=True)  # a few short texts: top terms need some
        t = min(TEXT_ROWS, m)
        pq.write_table(pa.table({"id": ids[:t], "text": pa.array(
            [f"cluster{planted_label(np.array([i]))[0]} planted words about topic{planted_label(np.array([i]))[0]} "
             f"and other things" for i in range(a, a + t)])}), f"{out}/{UPSTREAM}/{part}.parquet")

        # dedup: signatures and band keys
        g = group_of[a:b]
        planted = g >= 0
        exact_group = planted & exact_kind(g)
        near_group = planted & ~exact_kind(g)
        keys = prng.integers(0, 2**63, (m, 1 + bands), dtype=np.uint64) * 2  # even: never a planted (odd) key
        keys[exact_group] = group_keys[g[exact_group]]
        keys[near_group, 1:4] = group_keys[g[near_group], 1:4]
        shingles = [group_shingles[x] if x >= 0 and not exact_kind(x) else None for x in g.tolist()]
        from pipelines.dedup.tasks import _list_column
        sig = pa.table({"id": ids, "part": pa.array([part] * m), "exact": pa.array(keys[:, 0], pa.uint64()),
                        "chars": pa.array(tokens * 4, pa.int64()), "words": pa.array(tokens, pa.int64()),
                        "shingles": _list_column(shingles)}, schema=SIG_SCHEMA)
        os.makedirs(f"{out}/dedup/_sig", exist_ok=True)
        pq.write_table(sig, f"{out}/dedup/_sig/{part}.parquet")
        band = np.tile(np.arange(EXACT_BAND, bands, dtype=np.int64), m)  # -1 (exact), 0..13 per document
        flat_keys = keys.reshape(-1)
        row_ids = np.repeat(np.arange(m), 1 + bands)
        # the map's (key + band * 1_000_003) % buckets, in uint64 (wraps mod 2^64: the same for 2^k buckets)
        bucket = ((flat_keys + (band * 1_000_003).astype(np.uint64)) % np.uint64(buckets)).astype(np.int64)
        if buckets & (buckets - 1):
            bucket = np.array([(int(k) + int(bd) * 1_000_003) % buckets for k, bd in zip(flat_keys, band)])
        order = np.argsort(bucket, kind="stable")
        starts = np.searchsorted(bucket[order], np.arange(buckets + 1))
        all_bands = pa.table({"band": pa.array(band.astype(np.int16)), "key": pa.array(flat_keys, pa.uint64()),
                              "id": ids.take(pa.array(row_ids))}, schema=BAND_SCHEMA)
        for bk in range(buckets):
            rows = all_bands.take(pa.array(order[starts[bk]:starts[bk + 1]]))
            os.makedirs(f"{out}/dedup/_bands/{bucket_name(bk)}", exist_ok=True)
            pq.write_table(rows, f"{out}/dedup/_bands/{bucket_name(bk)}/{part}.parquet")
    return {"groups": len(groups), "duplicates": int(sum(len(x) - 1 for x in groups))}


# ---------------------------------------------------------------- one phase (child process)

def budget_of(n: int) -> int:
    """Half the candidates' tokens."""
    index = np.arange(n, dtype=np.int64)
    return int(doc_tokens(index)[~doc_excluded(index)].sum()) // 2


def climb_config(n: int):
    from pipelines.mixture.config import ClimbConfig, MixtureConfig

    return MixtureConfig(budget_tokens=budget_of(n), strata=["cluster"], climb=ClimbConfig(clusters=K),
                         memory=memory())


def memory():
    """The global steps' DuckDB settings (--memory-limit)."""
    from pipelines.spill import SpillConfig

    return SpillConfig(memory_limit=os.environ.get("SCALE_MEMORY_LIMIT", "1GB"))


def _vm_hwm_mb() -> float:
    with open("/proc/self/status") as f:
        return round(next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024, 1)


def _remove_markers(folder: str) -> None:
    for marker in Path(folder).glob("_SUCCESS.*"):
        marker.unlink()


def run_phase(phase: str, out: str, n: int, parts: int, buckets: int) -> dict:
    from pipelines.phase import run_task

    began = time.time()
    if phase in ("mixture kmeans", "mixture assign"):
        from pipelines.mixture.clusters import AssignTask, KmeansTask

        cfg = climb_config(n)
        _remove_markers(f"{out}/mixture")
        if phase == "mixture kmeans":
            reports = [run_task(KmeansTask(out, cfg, "synthetic", tuple(part_name(p) for p in range(parts))))]
        else:
            reports = [run_task(AssignTask(shard, cfg, "synthetic")) for shard in shards(out, parts)]
        return {"seconds": round(time.time() - began, 2), "peak_rss_mb": _vm_hwm_mb(),
                "task_peak_rss_mb": max(r["peak_rss_mb"] for r in reports), "ok": True,
                "detail": {"slowest_task_s": max(r["seconds"] for r in reports)}}
    if phase.startswith("mixture plan"):
        from pipelines.mixture.config import MixtureConfig
        from pipelines.mixture.tasks import MixturePlanTask

        climb = phase.endswith("(climb)")
        cfg = climb_config(n) if climb else MixtureConfig(budget_tokens=budget_of(n), strata=["source"],
                                                                          memory=memory())
        budget = cfg.budget_tokens
        _remove_markers(f"{out}/mixture")
        task = MixturePlanTask(out, cfg, "synthetic", tuple((s, UPSTREAM) for s in shards(out, parts)))
        report = run_task(task)
        seconds, peak = time.time() - began, _vm_hwm_mb()
        plan = json.loads(Path(f"{out}/mixture/_plan/plan.json").read_text())
        selection = pq.read_table(f"{out}/mixture/_plan/selection.parquet", columns=["id", "stratum"])
        error = abs(plan["selected_tokens"] - budget) / budget
        detail = {"budget": budget, "selected_tokens": plan["selected_tokens"], "error": round(error, 6),
                  "rows": selection.num_rows}
        ok = error <= 0.01 and selection.num_rows == n
        if climb:
            got = np.array([int(s[1:]) if s[0] == "c" else -1 for s in selection.column("stratum").to_pylist()])
            want = planted_label(np.array([int(i[1:]) for i in selection.column("id").to_pylist()]))
            table = np.zeros((K, K + 1), dtype=np.int64)
            np.add.at(table, (want, got + 1), 1)
            detail["purity"] = round(float(table.max(axis=1).sum() / max(n, 1)), 4)
        del selection
        return {"seconds": round(seconds, 2), "peak_rss_mb": peak, "task_peak_rss_mb": report["peak_rss_mb"],
                "ok": bool(ok), "detail": detail}

    from pipelines.dedup.config import DedupConfig
    from pipelines.dedup.tasks import DedupGlobalTask

    cfg = DedupConfig(buckets=buckets, memory=memory())
    if phase == "dedup reduce":
        _remove_markers(f"{out}/dedup")
        reports = [run_task(DedupGlobalTask(out, cfg, "synthetic", b)) for b in range(buckets)]
        edges = sum(r["stages"]["dedup_reduce"]["edges"] for r in reports)
        return {"seconds": round(time.time() - began, 2), "peak_rss_mb": _vm_hwm_mb(),
                "task_peak_rss_mb": max(r["peak_rss_mb"] for r in reports), "ok": edges > 0,
                "detail": {"edges": edges, "slowest_bucket_s": max(r["seconds"] for r in reports)}}
    report = run_task(DedupGlobalTask(out, cfg, "synthetic", None))
    seconds, peak = time.time() - began, _vm_hwm_mb()
    want = {}
    for g, members in enumerate(planted_groups(n)):
        keeper = doc_id(int(members[0]))
        for i in members[1:]:
            want[doc_id(int(i))] = (keeper, "exact" if exact_kind(g) else "minhash")
    rows = pq.read_table(f"{out}/dedup/_clusters/clusters.parquet").to_pylist()
    got = {r["id"]: (r["duplicate_of"], r["reason"]) for r in rows}
    return {"seconds": round(seconds, 2), "peak_rss_mb": peak, "task_peak_rss_mb": report["peak_rss_mb"],
            "ok": got == want, "detail": {"planted_duplicates": len(want), "removed": len(got),
                                          "wrong": sum(got.get(k) != v for k, v in want.items())
                                          + len(set(got) - set(want))}}


# ---------------------------------------------------------------- parent: subprocesses under a cap

def child(args_list: list[str], mem_bytes: int, timeout: float, result: Path) -> dict:
    import psutil

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))

    result.unlink(missing_ok=True)
    began = time.time()
    proc = subprocess.Popen([sys.executable, __file__, *args_list, "--result", str(result)], preexec_fn=limit,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watched, peak, why = psutil.Process(proc.pid), 0, None
    while proc.poll() is None:
        try:
            rss = watched.memory_info().rss + sum(c.memory_info().rss for c in watched.children(recursive=True))
        except psutil.Error:
            rss = 0
        peak = max(peak, rss)
        if rss > mem_bytes:
            why = f"killed: RSS {rss / 2**30:.1f} GB > cap"
        elif time.time() - began > timeout:
            why = f"killed: over {timeout:.0f} s"
        if why:
            proc.kill()
            break
        time.sleep(0.2)
    output = proc.communicate()[0]
    seconds = round(time.time() - began, 2)
    if why is None and proc.returncode == 0 and result.exists():
        return json.loads(result.read_text())
    lines = output.strip().splitlines()
    frames = [line.strip() for line in lines if line.strip().startswith('File "') and "/pipelines/" in line]
    where = (" at " + frames[-1].split("/pipelines/", 1)[1].replace('", line ', ":").replace(", in ", " in ")
             if frames else "")
    return {"seconds": seconds, "peak_rss_mb": round(peak / 2**20, 1), "ok": False,
            "failed": why or f"exit {proc.returncode}: {' '.join(lines[-1:])[:200]}{where}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1e5,1e6,1e7")
    ap.add_argument("--parts", type=int, default=64)
    ap.add_argument("--buckets", type=int, default=16)
    ap.add_argument("--memory-limit", default="1GB", help="DuckDB memory_limit of every global step (1GB)")
    ap.add_argument("--duplicates", default="0.01", help="share of the documents in planted duplicate groups")
    ap.add_argument("--mem-gb", type=float, default=12)
    ap.add_argument("--timeout", type=float, default=480)
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--work", default=str(ROOT / "bench" / "_work" / "scale"))
    ap.add_argument("--keep", action="store_true", help="keep the synthetic inputs")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        out = f"{args.work}/n{args.n}"
        began = time.time()
        if args.child == "generate":
            detail = generate(out, args.n, args.parts, args.buckets)
            found = {"seconds": round(time.time() - began, 2), "peak_rss_mb": _vm_hwm_mb(), "ok": True,
                     "detail": detail}
        else:
            found = run_phase(args.child, out, args.n, args.parts, args.buckets)
        Path(args.result).write_text(json.dumps(found))
        return
    os.environ["SCALE_MEMORY_LIMIT"] = args.memory_limit  # the children read them
    os.environ["SCALE_DUPLICATES"] = args.duplicates
    mem = int(args.mem_gb * 2**30)
    phases = [p.strip() for p in args.phases.split(",")]
    results, stopped = [], set()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    for n in [int(float(s)) for s in args.sizes.split(",")]:
        todo = [p for p in phases if p not in stopped]
        if not todo:
            break
        out = Path(args.work) / f"n{n}"
        shutil.rmtree(out, ignore_errors=True)
        common = ["--n", str(n), "--parts", str(args.parts), "--buckets", str(args.buckets), "--work", args.work]
        for phase in ["generate"] + todo:
            r = child(["--child", phase, *common], mem, args.timeout if phase != "generate" else 3 * args.timeout,
                      Path(args.work) / "result.json")
            r = {"n": n, "phase": phase, **r}
            results.append(r)
            print(f"{n:>10,}  {phase:<22} {r['seconds']:>8.1f} s  {r['peak_rss_mb']:>8.0f} MB  "
                  f"{'ok' if r['ok'] else 'FAIL'}  {r.get('failed') or json.dumps(r.get('detail', {}))}", flush=True)
            if phase == "generate" and not r["ok"]:
                break
            if not r["ok"] and phase != "generate":
                stopped.add(phase)  # no larger N for a phase that failed
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    (Path(args.work).parent / "scale.json").write_text(json.dumps(results, indent=1))
    print("\n| N | phase | seconds | peak RSS | RSS growth per added document | answer |")
    print("|---:|---|---:|---:|---:|---|")
    last = {}
    for r in results:
        if r["phase"] == "generate":
            continue
        rss = r.get("task_peak_rss_mb", r["peak_rss_mb"])
        before = last.get(r["phase"])
        growth = (f"{(rss - before[1]) * 2**20 / (r['n'] - before[0]):,.0f} B" if before and r["ok"] else "")
        if r["ok"]:
            last[r["phase"]] = (r["n"], rss)
        extra = r.get("failed") or ", ".join(f"{k} {v}" for k, v in r.get("detail", {}).items()
                                             if k in ("purity", "error", "wrong"))
        print(f"| {r['n']:,} | {r['phase']} | {r['seconds']:.1f} | {rss:,.0f} MB | {growth} | "
              f"{'ok' if r['ok'] else 'FAIL'} ({extra}) |")

if __name__ == "__main__":
    main()
