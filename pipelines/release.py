"""Building a release: plan the tasks from the config, run them phase by phase on a runner, write the manifest.

Stages run in registry order: a run of consecutive per-document stages is one task per input shard
(a `documents` phase), and each stage with global work adds its own phases (maps, shuffles through
storage, reduces), each reading what the phase before it wrote.
"""

import datetime as dt
import logging
import os
import re
import time
from dataclasses import replace

import fsspec
import pyarrow.parquet as pq
from tqdm import tqdm

from pipelines import __version__, io, stats
from pipelines.config import ReleaseConfig
from pipelines.io import expand_paths
from pipelines.lock import ReleaseLock
from pipelines.phase import Envelope
from pipelines.readers import HTML_FORMATS, MAX_PAYLOAD_BYTES
from pipelines.registry import STAGES
from pipelines.runners import combined, make_runner
from pipelines.shard_task import ShardTask
from pipelines.stage import Phase, PhaseContext, Stage, Upstream
from pipelines.stages import buckets, select

DOCUMENTS = "documents"  # the per-document phase
log = logging.getLogger(__name__)


class ShardFailures(RuntimeError):
    """Some shard-tasks failed every attempt; everything else completed and was kept."""


def plan(cfg: ReleaseConfig) -> list[ShardTask]:
    """One shard per input file, numbered by its place in the sorted input list (not by worker)."""
    # the HTML stage's payload limit: the reader keeps no more of a payload than that stage would parse
    payload = next((getattr(cfg.stages, s.name).max_payload_bytes for s in STAGES
                    if s.reads_html and getattr(cfg.stages, s.name) is not None), MAX_PAYLOAD_BYTES)
    shards = []
    for src in cfg.sources:
        fs, _ = fsspec.core.url_to_fs(src.paths[0], **src.storage_options)
        files = sorted({f for pattern in src.paths for f in expand_paths(pattern, src.storage_options)})
        for path in files:
            shards.append(ShardTask(part=f"part-{len(shards):05d}", source=src, input_file=path,
                                    input_size=fs.size(path), chain=(), output=cfg.output,
                                    max_payload_bytes=payload))
    return shards


def _segments(cfg: ReleaseConfig) -> list[list[Stage]]:
    """The configured stages in pipeline order, grouped: consecutive per-document stages run together
    (one task per shard); a global stage is a group of its own."""
    groups: list[list[Stage]] = []
    for stage in STAGES:
        if getattr(cfg.stages, stage.name) is None:
            continue
        if stage.per_document and groups and groups[-1][0].per_document:
            groups[-1].append(stage)
        else:
            groups.append([stage])
    return groups


def _chain(chain: list[tuple[Stage, object]], source_format: str) -> tuple:
    """The stages that apply to a source's records, with their configs (an HTML stage only to HTML)."""
    return tuple((s, c) for s, c in chain if not s.reads_html or source_format in HTML_FORMATS)


def _documents(ctx: PhaseContext, chain: list[tuple[Stage, object]], name: str) -> Phase:
    """One task per shard running `chain`; points `ctx.upstream` at its output."""
    tasks = []
    for shard in ctx.shards:
        upstream = ctx.upstream[shard.part]
        # the input file itself, unless a stage's prepare phases put their fingerprint on it
        reads_input = upstream.stage is None and upstream.fingerprint == shard.fingerprint_upto(-1)
        task = replace(shard, chain=_chain(chain, shard.source.format), after=None if reads_input else upstream)
        if task.chain:
            tasks.append(task)
            ctx.upstream[shard.part] = Upstream(task.chain[-1][0].name, task.fingerprint())
    used = tuple(sorted({stage.name for t in tasks for stage, _ in t.chain}))
    return Phase(name, used, tasks)


def phases(cfg: ReleaseConfig, shards: list[ShardTask]) -> list[Phase]:
    """Every phase in pipeline order: a `documents` phase per run of per-document stages, and the
    phases of each global stage. Each reads what the one before it wrote (`ctx.upstream`). A stage
    whose `prepare` returns phases (they need every part's documents) starts a new documents phase."""
    ctx = PhaseContext(cfg, shards, {t.part: Upstream(None, t.fingerprint_upto(-1)) for t in shards})
    out: list[Phase] = []
    runs = 0  # documents phases so far

    def documents(chain) -> Phase:
        nonlocal runs
        runs += 1
        return _documents(ctx, chain, DOCUMENTS if runs == 1 else f"{DOCUMENTS} {runs}")

    for group in _segments(cfg):
        if not group[0].per_document:
            out += group[0].phases(ctx)
            continue
        chain: list[tuple[Stage, object]] = []
        for stage in group:
            stage_cfg = getattr(cfg.stages, stage.name)
            if stage.prepare is not None:
                ahead = replace(ctx, upstream=dict(ctx.upstream))
                _documents(ahead, chain, "")  # where the stages before it will leave the documents
                stage_cfg, before = stage.prepare(stage_cfg, ahead)
                if before:
                    if chain:
                        out.append(documents(chain))
                    ctx.upstream.update(ahead.upstream)  # as prepare left it
                    out += before
                    chain = []
            chain.append((stage, stage_cfg))
        out.append(documents(chain))
    return out


def _run_phase(runner, phase: Phase, release: str, resources, progress: bool) -> tuple[list[dict], list[dict]]:
    reports, failures = [], []
    desc = f"{release}: {phase.name}"
    kept = 0
    with tqdm(total=len(phase.tasks), desc=desc, unit="shard", disable=not progress) as bar:
        for task, report, exc in runner.map_unordered(Envelope(phase.name.replace(" ", "_")), phase.tasks, resources):
            if exc is not None:
                failures.append({"phase": desc, "part": task.part, "input_file": task.input_file,
                                 "error": f"{type(exc).__name__}: {exc}"})
            else:
                reports.append({**report, "phase": desc})
                last = list(report["stages"].values())[-1] if report["stages"] else {}
                kept += last.get("docs_out", 0)
            bar.update(1)
            bar.set_postfix(kept=kept, failed=len(failures))
    return reports, failures


def _run_phases(cfg: ReleaseConfig, runner, shards: list[ShardTask], progress: bool) -> tuple[list, list]:
    """Each phase in turn; stops after a phase with failures."""
    reports, failures = [], []
    for phase in phases(cfg, shards):
        resources = combined([cfg.runner.resources.get(name) for name in phase.stages])
        phase_reports, failures = _run_phase(runner, phase, cfg.release, resources, progress)
        reports += phase_reports
        if failures:
            break
        if phase.after is not None:
            phase.after()
    return reports, failures


def run_release(cfg: ReleaseConfig, progress: bool = True, force: bool = False) -> dict:
    """Runs every task not already done, phase by phase, then writes the manifest. Returns the run log.

    Raises ReleaseLocked when another run is writing the release (`force` takes its lock over), and
    ShardFailures, after keeping everything that completed, when some task failed every attempt.
    """
    if "://" not in cfg.output and not os.path.isabs(cfg.output):  # a worker's directory may differ (Ray working_dir)
        cfg = cfg.model_copy(update={"output": os.path.abspath(cfg.output)})
    with ReleaseLock(cfg.output, force):
        return _run_locked(cfg, progress)


def _run_locked(cfg: ReleaseConfig, progress: bool) -> dict:
    shards = plan(cfg)
    runner = make_runner(cfg.runner, scratch=io.join(cfg.output, "_logs"))
    runner.start()  # connects to the engine and checks the resources asked for, before any work
    io.remove_temporaries(cfg.output)  # the lock is ours: leftovers are from a crash
    buckets = {name: getattr(cfg.stages, name).buckets for name in cfg.stages.enabled()  # shuffle buckets (a
               if isinstance(getattr(getattr(cfg.stages, name), "buckets", None), int)}  # count), not score's
    set_aside_stale(cfg.output, {t.part for t in shards}, buckets)
    began = time.time()
    try:
        reports, failures = _run_phases(cfg, runner, shards, progress)
    finally:
        runner.close()
    log = {
        "release": cfg.release, "runner": cfg.runner.model_dump(mode="json"),
        "started": dt.datetime.fromtimestamp(began, dt.timezone.utc).isoformat(),
        "seconds": round(time.time() - began, 3), "shards": len(shards),
        "skipped": sum(r["skipped"] for r in reports), "tasks": len(reports) + len(failures),
        "failures": failures, "reports": sorted(reports, key=lambda r: r["part"]),
    }
    stamp = dt.datetime.fromtimestamp(began, dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    io.write_json_atomic(io.join(cfg.output, "_logs", f"run-{stamp}.json"), log)
    io.remove_temporaries(cfg.output)  # every task has ended: half-written files of killed attempts go
    if failures:
        names = ", ".join(f"{f['part']} ({f['input_file']}): {f['error']}" for f in failures)
        raise ShardFailures(f"{len(failures)} of {len(shards)} shards failed; the rest are complete. {names}")
    write_manifest(cfg, shards)
    return log


# a part's files: part-00003.parquet, _SUCCESS.part-00003, part-00003-00000.bin
PART = re.compile(r"(?:^|[/._])(part-[0-9]+)")
# a global stage's bucket (stage.bucket_name): _bands/bucket-00003/…, _SUCCESS.reduce.bucket-00003
BUCKET = re.compile(r"(?:^|[/._])bucket-([0-9]+)")
STALE = "_stale"


def set_aside_stale(output: str, planned: set[str], buckets: dict[str, int] | None = None) -> list[str]:
    """Moves the files of parts no longer planned (an input left the config), and the shuffle files of
    buckets past a stage's `buckets` (it was lowered), to OUT/_stale/, so no global step or view reads
    them. `buckets`: stage name -> its configured count. Returns the paths moved, relative to the output."""
    fs, root = fsspec.core.url_to_fs(output)
    if not fs.exists(root):
        return []
    root = root.rstrip("/")
    moved = []
    for path in sorted(fs.find(root)):
        rel = path[len(root) + 1:]
        if rel.startswith(f"{STALE}/") or rel.startswith("_logs/") or not _is_stale(rel, planned, buckets or {}):
            continue
        fs.makedirs(os.path.dirname(f"{root}/{STALE}/{rel}"), exist_ok=True)
        fs.mv(path, f"{root}/{STALE}/{rel}")
        moved.append(rel)
    if moved:
        log.warning("%d files of parts no longer in the release moved to %s", len(moved), io.join(output, STALE))
    return moved


def _is_stale(rel: str, planned: set[str], buckets: dict[str, int]) -> bool:
    part = PART.search(rel)  # in a folder name too: tokenize/mds/part-00003/
    if part and part.group(1) not in planned:
        return True
    stage = rel.split("/", 1)[0]
    bucket = BUCKET.search(rel)
    return stage in buckets and bucket is not None and int(bucket.group(1)) >= buckets[stage]


def write_manifest(cfg: ReleaseConfig, shards: list[ShardTask]) -> dict:
    """Resolved config and its hash, inputs, every output file with sha256 and row count, and the
    thresholds select measured for its top_fraction rules.

    Nothing here depends on the runner, the worker count or the clock, so reruns give the same bytes.
    """
    fs, root = fsspec.core.url_to_fs(cfg.output)
    outputs, stale = [], []
    for path in sorted(fs.find(root)):
        rel = path[len(root.rstrip("/")) + 1:]
        if rel.startswith(f"{STALE}/"):
            stale.append(rel)
            continue
        if rel in ("manifest.json", "_lock") or rel.startswith("_logs/") or "/.tmp-" in path:
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
        "config": cfg.output_config(),
        "config_sha256": cfg.content_hash(),
        "inputs": [{"part": t.part, "source": t.source.name, "path": t.input_file, "bytes": t.input_size}
                   for t in shards],
        "counts": {"stages": funnel["stages"], "records_read": funnel["records_read"],
                   "upsampled": funnel["upsampled"], "kept": funnel["kept"],
                   "adds_up": funnel["adds_up"]},
        "outputs": outputs,
        "stale": stale,  # files of inputs that left the release, set aside (not part of it)
    }
    thresholds = select.thresholds_used(cfg.stages.select, cfg.output)
    if thresholds is not None:  # measured on the pool at run time, so not in the config
        manifest["select_thresholds"] = thresholds
    cuts = buckets.used(cfg.stages.score, cfg.output)
    if cuts is not None:  # likewise
        manifest["score_buckets"] = cuts
    io.write_json_atomic(io.join(cfg.output, "manifest.json"), manifest)
    return manifest
