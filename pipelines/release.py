"""Building a release: plan shard-tasks from the config, run them on a runner, write the manifest."""

import datetime as dt
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import fsspec
import pyarrow.parquet as pq
from tqdm import tqdm

from pipelines import __version__, io, stats
from pipelines.config import ReleaseConfig, TokenizeConfig, expand_paths
from pipelines.runners import combined, make_runner
from pipelines.config import sha256_json
from pipelines.dedup.tasks import DedupApplyTask, DedupGlobalTask, DedupMapTask, run_apply, run_cluster, run_map, run_reduce
from pipelines.mixture.tasks import phases as mixture_phases
from pipelines.shard_task import ShardTask, last_stage, run_shard_task
from pipelines.tokenize_task import TokenizeTask, run_tokenize_task, write_tokens_manifest
from pipelines.stages import STAGES


class ShardFailures(RuntimeError):
    """Some shard-tasks failed every attempt; everything else completed and was kept."""


def plan(cfg: ReleaseConfig) -> list[ShardTask]:
    """One task per input file, numbered by its place in the sorted input list (not by worker)."""
    tasks = []
    for src in cfg.sources:
        fs, _ = fsspec.core.url_to_fs(src.paths[0], **src.storage_options)
        files = sorted({f for pattern in src.paths for f in expand_paths(pattern, src.storage_options)})
        chain = tuple(
            (name, getattr(cfg.stages, name))
            for name in cfg.stages.enabled()
            if name in STAGES and STAGES[name].applies_to(src.format)
        )
        for path in files:
            tasks.append(ShardTask(part=f"part-{len(tasks):05d}", source=src, input_file=path,
                                   input_size=fs.size(path), chain=chain, output=cfg.output))
    return tasks


@dataclass(frozen=True)
class Timed:
    """A phase's task function, run where the runner puts it; the timing and place go to the run log."""

    fn: Callable[[object], dict]

    @property
    def name(self) -> str:  # Ray shows it as the worker's process title (ray::run_shard_task)
        return self.fn.__name__

    def __call__(self, task) -> tuple[dict, dict]:
        began = time.time()
        result = self.fn(task)
        return result, {"host": socket.gethostname(), "pid": os.getpid(), "started": round(began, 3),
                        "seconds": round(time.time() - began, 3)}


def _run_phase(runner, fn, tasks: list, desc: str, progress: bool, resources=None) -> tuple[list[dict], list[dict]]:
    reports, failures = [], []
    kept = 0
    with tqdm(total=len(tasks), desc=desc, unit="shard", disable=not progress) as bar:
        for task, outcome, exc in runner.map_unordered(Timed(fn), tasks, resources):
            if exc is not None:
                failures.append({"phase": desc, "part": task.part, "input_file": task.input_file,
                                 "error": f"{type(exc).__name__}: {exc}"})
            else:
                report, timing = outcome
                reports.append({**report, "phase": desc, **timing})
                last = list(report["stages"].values())[-1] if report["stages"] else {}
                kept += last.get("docs_out", 0)
            bar.update(1)
            bar.set_postfix(kept=kept, failed=len(failures))
    return reports, failures


PHASE_STAGE = {"dedup": "dedup", "mixture": "mixture", "tokens": "tokenize"}  # first word of a phase name


def _later_phases(cfg: ReleaseConfig, tasks: list[ShardTask], upstream: dict):
    """Phases after the per-document stages, each a callable returning (name, task fn, tasks), built
    lazily because a phase's fingerprints depend on the phase before it."""
    dedup, mixture, tokenize = cfg.stages.dedup, cfg.stages.mixture, cfg.stages.tokenize
    if dedup is not None:
        maps = [DedupMapTask(t, dedup) for t in tasks]
        global_fp = sha256_json({"maps": [m.fingerprint() for m in maps], "against": dedup.against})
        yield lambda: ("dedup map", run_map, maps)
        yield lambda: ("dedup reduce", run_reduce,
                       [DedupGlobalTask(cfg.output, dedup, global_fp, b) for b in range(dedup.buckets)])
        yield lambda: ("dedup cluster", run_cluster, [DedupGlobalTask(cfg.output, dedup, global_fp)])
        yield lambda: ("dedup", run_apply, [DedupApplyTask(t, dedup, global_fp) for t in tasks])
        upstream.update({t.part: ("dedup", global_fp) for t in tasks})
    if mixture is not None:
        tokenizer = tokenize.tokenizer if tokenize is not None else TokenizeConfig().tokenizer
        for phase in mixture_phases(cfg.output, mixture, tokenizer, tasks, upstream):
            yield lambda phase=phase: phase
    if tokenize is not None:
        yield lambda: ("tokens", run_tokenize_task,
                       [TokenizeTask(t, tokenize, *upstream[t.part]) for t in tasks])


def _run_phases(cfg: ReleaseConfig, runner, tasks: list[ShardTask], progress: bool) -> tuple[list, list]:
    """The per-document phase, then each later phase in turn; stops after a phase with failures."""
    per_doc = [t for t in tasks if t.chain]
    doc_stages = {name for t in per_doc for name, _ in t.chain}
    reports, failures = _run_phase(runner, run_shard_task, per_doc, f"{cfg.release}: documents", progress,
                                   combined([cfg.runner.resources.get(s) for s in sorted(doc_stages)]))
    # what the next phase reads, per part: (stage folder or None for the source, its fingerprint)
    upstream = {t.part: (last_stage(t), t.fingerprint(len(t.chain) - 1)) for t in tasks}
    for phase in _later_phases(cfg, tasks, upstream):
        if failures:
            break
        name, fn, phase_tasks = phase()
        resources = cfg.runner.resources.get(PHASE_STAGE[name.split()[0]])
        phase_reports, failures = _run_phase(runner, fn, phase_tasks, f"{cfg.release}: {name}", progress, resources)
        reports += phase_reports
    return reports, failures


def run_release(cfg: ReleaseConfig, progress: bool = True) -> dict:
    """Runs every task not already done, phase by phase, then writes the manifests. Returns the run log.

    The per-document stages run as one task per input shard; dedup, mixture and tokenize follow as
    phases of their own (maps, shuffles through storage, reduces). Raises ShardFailures, after
    keeping everything that completed, when some task failed every attempt.
    """
    if "://" not in cfg.output and not os.path.isabs(cfg.output):  # a worker's directory may differ (Ray working_dir)
        cfg = cfg.model_copy(update={"output": os.path.abspath(cfg.output)})
    tasks = plan(cfg)
    runner = make_runner(cfg.runner, scratch=io.join(cfg.output, "_logs"))
    runner.start()  # connects to the engine and checks the resources asked for, before any work
    io.remove_temporaries(cfg.output)  # one run writes a release at a time: leftovers are from a crash
    began = time.time()
    try:
        reports, failures = _run_phases(cfg, runner, tasks, progress)
    finally:
        runner.close()
    log = {
        "release": cfg.release, "runner": cfg.runner.model_dump(mode="json"),
        "started": dt.datetime.fromtimestamp(began, dt.timezone.utc).isoformat(),
        "seconds": round(time.time() - began, 3), "shards": len(tasks),
        "skipped": sum(r["skipped"] for r in reports), "tasks": len(reports) + len(failures),
        "failures": failures, "reports": sorted(reports, key=lambda r: r["part"]),
    }
    stamp = dt.datetime.fromtimestamp(began, dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    io.write_json_atomic(io.join(cfg.output, "_logs", f"run-{stamp}.json"), log)
    io.remove_temporaries(cfg.output)  # every task has ended: half-written files of killed attempts go
    if failures:
        names = ", ".join(f"{f['part']} ({f['input_file']}): {f['error']}" for f in failures)
        raise ShardFailures(f"{len(failures)} of {len(tasks)} shards failed; the rest are complete. {names}")
    if cfg.stages.tokenize is not None:
        write_tokens_manifest(cfg.output, cfg.stages.tokenize, [t.part for t in tasks])
    write_manifest(cfg, tasks)
    return log


def write_manifest(cfg: ReleaseConfig, tasks: list[ShardTask]) -> dict:
    """Resolved config and its hash, inputs, and every output file with sha256 and row count.

    Nothing here depends on the runner, the worker count or the clock, so reruns give the same bytes.
    """
    fs, root = fsspec.core.url_to_fs(cfg.output)
    outputs = []
    for path in sorted(fs.find(root)):
        rel = path[len(root.rstrip("/")) + 1:]
        if rel == "manifest.json" or rel.startswith("_logs/") or "/.tmp-" in path:
            continue
        entry = {"path": rel, "bytes": fs.size(path), "sha256": io.sha256_file(fs.unstrip_protocol(path))}
        if rel.endswith(".parquet"):
            with fs.open(path, "rb") as fh:
                entry["rows"] = pq.ParquetFile(fh).metadata.num_rows
        outputs.append(entry)
    funnel = stats.funnel(cfg.output)
    manifest = {
        "release": cfg.release,
        "gristmill_version": __version__,
        "config": cfg.model_dump(mode="json", exclude={"runner", "output"}),
        "config_sha256": cfg.content_hash(),
        "inputs": [{"part": t.part, "source": t.source.name, "path": t.input_file, "bytes": t.input_size}
                   for t in tasks],
        "counts": {"stages": funnel["stages"], "records_read": funnel["records_read"],
                   "upsampled": funnel["upsampled"], "kept": funnel["kept"],
                   "adds_up": funnel["adds_up"]},
        "outputs": outputs,
    }
    io.write_json_atomic(io.join(cfg.output, "manifest.json"), manifest)
    return manifest
