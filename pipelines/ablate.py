"""`gristmill ablate OUT`: does the release's selection help? Its selected text against random selections.

The selection is what the release's last document-writing selection step kept: `mixture` if it ran,
else `select`, else `dedup` (its `part-*.parquet`, upsampled copies included, as written).
The pool is what entered the selection steps: the output of the last stage that ran before `select`
(if select ran), else before `mixture`, else before `dedup` (e.g. docs_filter, or docs_score: score only
adds columns); when no stage ran before it, the release's sources as read (WARC records through extract).

Both sides get the same number of characters, `chars`: all of the selection's (--chars caps it; never
more than the pool's). The selection (in a seeded order when it is cut) and, per seed 0..N-1, documents
of the pool drawn without replacement in a seeded random order until `chars` is reached (the last one
cut to fit). Each sample trains the proxy, scored on the target (lower is better):

- ngram: the CLIMB proxy's byte n-gram LM (pipelines/mixture/proxy.py), bits per byte on the target;
  its order and smoothing as the release's stages.mixture.climb.search.proxy has them, else defaults.
- command: the CLIMB command-proxy contract (mixture.json, train.jsonl, result.json under
  OUT/ablation/run-NNNN; run 0 is the selection, run k+1 random seed k), with --command, else the
  command of the release's stages.mixture.climb.search.proxy; a run that fails or passes its timeout
  is recorded with its status and the others go on.

The target is that proxy's `validation` source, else --target: a source of the release by name, or a
path/glob (format from its extension). The numbers go to OUT/ablation.json; `gristmill report` shows them.
"""

import hashlib
import html
import sys

import numpy as np

from pipelines import io, stats
from pipelines.errors import ConfigError

SELECTION_STAGES = ("dedup", "select", "mixture")  # in pipeline order; the last that ran wrote the selection
RESULT = "ablation.json"


def _config(output: str) -> dict:
    path = io.join(output, "manifest.json")
    return (io.read_json(path) or {}).get("config", {}) if io.exists(path) else {}


def _climb_proxy(config: dict) -> dict | None:
    try:
        return config["stages"]["mixture"]["climb"]["search"]["proxy"]
    except (KeyError, TypeError):
        return None


def stages_used(output: str) -> tuple[str, str | None]:
    """(selection stage, pool stage or None for the sources)."""
    ran = [s for s in stats.stage_names(output) if io.glob(output, f"{s}/part-*.parquet")]
    chosen = [s for s in SELECTION_STAGES if s in ran]
    if not chosen:
        raise ConfigError(f"{output}: no selection stage (mixture, select or dedup) wrote documents")
    selection = chosen[-1]
    first = "select" if "select" in ran else "mixture" if "mixture" in ran else "dedup"
    before = ran[: ran.index(first)]
    return selection, (before[-1] if before else None)


def _source_from_target(target: str, config: dict):
    from pipelines.readers import SourceConfig

    for src in config.get("sources", []):
        if src.get("name") == target:
            return SourceConfig.model_validate(src)
    name = target.rstrip("/").split("/")[-1]
    fmt = ("parquet" if ".parquet" in name else "warc" if ".warc" in name else "wet" if ".wet" in name
           else "jsonl")
    return SourceConfig(name="target", paths=[target], format=fmt)


def target_texts(output: str, target: str | None) -> tuple[object, list[str]]:
    """(SourceConfig, texts) of the target; ConfigError when there is none or it has no documents."""
    from pipelines.readers import SourceConfig
    from pipelines.sample import sample_texts

    config = _config(output)
    proxy = _climb_proxy(config)
    if target is not None:
        source, label = _source_from_target(target, config), target
    elif proxy and proxy.get("validation"):
        source = SourceConfig.model_validate(proxy["validation"])
        label = "stages.mixture.climb.search.proxy.validation"
    else:
        raise ConfigError("no target: the release has no stages.mixture.climb.search.proxy.validation; "
                          "give --target SOURCE_NAME_OR_PATH")
    try:
        texts = [t for _, t in sample_texts(source, 10_000)]
    except (OSError, ValueError) as exc:
        raise ConfigError(f"target {label}: cannot be read: {exc}") from None
    if not texts:
        raise ConfigError(f"target {label}: no documents with text")
    return source, texts


def proxy_config(output: str, kind: str | None, target, command: list[str] | None = None,
                 timeout: float | None = None):
    from pipelines.mixture.config import ProxyConfig

    release = _climb_proxy(_config(output))
    cfg = ProxyConfig.model_validate(release) if release else ProxyConfig(validation=target)
    kind = kind or ("command" if command else "ngram")
    update = {"kind": kind, "validation": target}
    if command:
        update["command"] = command
    if timeout is not None:
        if timeout <= 0:
            raise ConfigError("--timeout must be more than 0 seconds")
        update["timeout_seconds"] = timeout
    if kind == "command" and not (command or cfg.command):
        raise ConfigError("--proxy command: give --command 'TRAINER ARGS' (the release has no "
                          "stages.mixture.climb.search.proxy.command)")
    return cfg.model_copy(update=update)


def _draw(texts_of, lengths: np.ndarray, order: np.ndarray, chars: int) -> list[str]:
    """Documents in `order` until `chars` characters, the last one cut to fit."""
    ends = np.cumsum(lengths[order])
    n = int(np.searchsorted(ends, chars)) + 1  # the first n reach `chars`
    chosen = order[:n]
    texts = texts_of(chosen)
    short = chars - int(ends[n - 2]) if n > 1 else chars
    texts[-1] = texts[-1][:short]
    return texts


class _Docs:
    """A stage's documents (or the sources'): lengths up front, texts fetched by index. Only the
    lengths and the drawn texts are held: the sources are read again for each draw."""

    def __init__(self, con, view: str | None, sources: list | None = None):
        self.con, self.view, self.sources = con, view, sources
        if view is not None:
            con.execute(f"CREATE TEMP TABLE _{view} AS SELECT row_number() OVER (ORDER BY id, md5(text)) - 1 AS i, "
                        f"length(text) AS n FROM {view} WHERE text IS NOT NULL")
            self.lengths = con.execute(f"SELECT n FROM _{view} ORDER BY i").fetchnumpy()["n"].astype(np.int64)
        else:
            self.lengths = np.fromiter((len(t) for t in self._source_texts()), dtype=np.int64)

    def _source_texts(self):
        from pipelines.sample import iter_texts

        return (t for s in self.sources for _, t in iter_texts(s))

    def get(self, idx: np.ndarray) -> list[str]:
        if self.view is None:
            wanted = {int(i): k for k, i in enumerate(idx)}
            found = [""] * len(idx)
            for i, text in enumerate(self._source_texts()):
                if i in wanted:
                    found[wanted[i]] = text
            return found
        import pyarrow as pa

        self.con.register("_want", pa.table({"i": pa.array(idx, pa.int64()), "k": pa.array(np.arange(len(idx)))}))
        rows = self.con.execute(f"SELECT d.text FROM (SELECT text, row_number() OVER (ORDER BY id, md5(text)) - 1 "
                                f"AS i FROM {self.view} WHERE text IS NOT NULL) d JOIN _want USING (i) ORDER BY k"
                                ).fetchall()
        self.con.unregister("_want")
        return [r[0] for r in rows]


def ablate(output: str, seeds: int = 5, target: str | None = None, proxy: str | None = None,
           command: list[str] | None = None, timeout: float | None = None, chars: int | None = None) -> dict:
    """Runs the ablation, writes OUT/ablation.json and returns it; ConfigError for a bad setup."""
    from pipelines.mixture.proxy import CommandProxy, NgramProxy, command_workdir
    from pipelines.readers import SourceConfig

    if seeds < 1:
        raise ConfigError("--seeds must be at least 1")
    if chars is not None and chars < 1:
        raise ConfigError("--chars must be at least 1")
    selection_stage, pool_stage = stages_used(output)
    target_source, validation = target_texts(output, target)
    cfg = proxy_config(output, proxy, target_source, command, timeout)
    con = stats.connect(output)
    selected = _Docs(con, f"docs_{selection_stage}")
    if pool_stage is not None:
        pool = _Docs(con, f"docs_{pool_stage}")
    else:
        pool = _Docs(con, None, [SourceConfig.model_validate(s) for s in _config(output).get("sources", [])])
    selection_chars = int(selected.lengths.sum())
    if selection_chars == 0 or int(pool.lengths.sum()) == 0:
        raise ConfigError(f"{output}: the selection or the pool has no text")
    chars = min(selection_chars, chars or selection_chars, int(pool.lengths.sum()))
    run_cfg = cfg.model_copy(update={"train_chars": chars})
    workdir = command_workdir(io.join(output, "ablation"), "gristmill-ablate-") if cfg.kind == "command" else None

    def measure(texts: list[str], key: str, run: int) -> tuple[float | None, str]:
        if cfg.kind == "ngram":
            scorer = NgramProxy(run_cfg, [texts], validation)
        else:
            scorer = CommandProxy(run_cfg, [texts], [key], workdir)
        return scorer(np.array([1.0]), run)

    order = np.random.default_rng(0).permutation(len(selected.lengths))
    value, status = measure(_draw(selected.get, selected.lengths, order, chars), "selection", 0)
    runs = []
    for seed in range(seeds):
        order = np.random.default_rng(seed).permutation(len(pool.lengths))
        texts = _draw(pool.get, pool.lengths, order, chars)
        v, s = measure(texts, f"random_seed_{seed}", seed + 1)
        runs.append({"seed": seed, "value": v, "status": s, "documents": len(texts)})
    ok = [r["value"] for r in runs if r["value"] is not None]
    summary = {"mean": float(np.mean(ok)), "min": min(ok), "max": max(ok)} if ok else None
    result = {
        "metric": "bits_per_byte" if cfg.kind == "ngram" else "objective",
        "proxy": {"kind": cfg.kind, "order": cfg.order, "command": cfg.command} if cfg.kind == "command"
        else {"kind": cfg.kind, "order": cfg.order},
        "selection_stage": selection_stage, "pool_stage": pool_stage or "sources",
        "target": {"name": target_source.name, "paths": target_source.paths, "documents": len(validation),
                   "sha256": hashlib.sha256("\x00".join(validation).encode()).hexdigest()},
        "chars": chars, "selection_chars": selection_chars, "pool_chars": int(pool.lengths.sum()),
        "pool_documents": len(pool.lengths),
        "selection": {"value": value, "status": status}, "seeds": list(range(seeds)), "random": runs,
        "random_summary": summary,
        "difference_to_mean": None if value is None or not ok else round(value - summary["mean"], 6),
        "difference_to_best": None if value is None or not ok else round(value - summary["min"], 6),
    }
    io.write_json_atomic(io.join(output, RESULT), result)
    return result


def _fmt(v) -> str:
    return "failed" if v is None else f"{v:.4f}"


def format_result(r: dict) -> str:
    s = r["random_summary"] or {}
    lines = [f"ablation: {r['selection_stage']} selection vs random from {r['pool_stage']} "
             f"({r['chars']} characters each), {r['proxy']['kind']} proxy, target {r['target']['name']} "
             f"({r['metric']}, lower is better)",
             f"{'':<24}{r['metric']:>14}",
             f"{'selection':<24}{_fmt(r['selection']['value']):>14}",
             f"{'random mean':<24}{_fmt(s.get('mean')):>14}",
             f"{'random min (best)':<24}{_fmt(s.get('min')):>14}",
             f"{'random max':<24}{_fmt(s.get('max')):>14}",
             f"{'selection - mean':<24}{_fmt(r['difference_to_mean']):>14}",
             f"{'selection - best random':<24}{_fmt(r['difference_to_best']):>14}"]
    for run in r["random"]:
        if run["value"] is None:
            lines.append(f"  random seed {run['seed']}: {run['status']}")
    if r["selection"]["value"] is None:
        lines.append(f"  selection: {r['selection']['status']}")
    return "\n".join(lines)


def report_section(output: str) -> list[str]:
    """The report's Ablation section when OUT/ablation.json exists."""
    from pipelines.report_parts import bars, table

    path = io.join(output, RESULT)
    if not io.exists(path):
        return []
    r = io.read_json(path)
    s = r.get("random_summary") or {}
    rows = [("selection", r["selection"]["value"]), ("random mean", s.get("mean")), ("random min", s.get("min")),
            ("random max", s.get("max")), ("selection - mean", r.get("difference_to_mean")),
            ("selection - best random", r.get("difference_to_best"))]
    parts = ["<h2>Ablation</h2>",
             f"<p>{html.escape(r['selection_stage'])} selection vs random selections of the same "
             f"{r['chars']} characters from {html.escape(r['pool_stage'])} (seeds {r['seeds']}), "
             f"{html.escape(r['proxy']['kind'])} proxy on target {html.escape(r['target']['name'])}; "
             f"{html.escape(r['metric'])}, lower is better.</p>",
             table(["", r["metric"]], [(k, "failed" if v is None else round(v, 6)) for k, v in rows], "ablation")]
    labels = ["selection"] + [f"seed {run['seed']}" for run in r["random"]]
    values = [r["selection"]["value"]] + [run["value"] for run in r["random"]]
    if all(v is not None for v in values):
        parts.append(bars(labels, values, f"ablation: {r['metric']} on the target"))
    return parts


def main_ablate(output: str, seeds: int, target: str | None, proxy: str | None, command: list[str] | None = None,
                timeout: float | None = None, chars: int | None = None) -> int:
    """The CLI's body: 0 done, 1 a proxy run failed, ConfigError (exit 2) for a bad setup."""
    result = ablate(output, seeds, target, proxy, command, timeout, chars)
    print(format_result(result))
    print(f"\nwritten to {io.join(output, RESULT)}", file=sys.stderr)
    failed = result["selection"]["value"] is None or result["random_summary"] is None
    return 1 if failed else 0


