"""Release config: one YAML per corpus release, validated with pydantic before any work starts.

This module holds the release and runner schemas and the loader; each stage's schema and checks
live with the stage (`pipelines.registry`), each source's with the readers. Every error names the
file, the key and the reason. Inputs are expanded (globs, fsspec URIs) here too, so a missing input
fails at `gristmill validate`, not an hour into a run.
"""

import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model, field_validator

from pipelines.errors import ConfigError
from pipelines.io import expand_paths, sha256_json
from pipelines.readers import HTML_FORMATS, SourceConfig
from pipelines.registry import STAGES
from pipelines.runners.beam_options import BeamOptionsError, pipeline_options
from pipelines.stage import CheckContext
from scorers._config import StrictModel

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
    """What one task of a stage needs (Ray: task resources; Beam: resource hints)."""

    cpus: float = Field(1, gt=0, description="CPUs per task")
    gpus: float = Field(0, ge=0, description="GPUs per task (Ray)")
    memory: int | str | None = Field(None, description="bytes or \"4GiB\": Ray schedules a task only where this "
                                                       "much is free")

    @field_validator("memory")
    @classmethod
    def _size(cls, value):
        return None if value is None else memory_bytes(value)


class RunnerConfig(StrictModel):
    """Where and how the tasks run; never part of the output bytes."""

    kind: Literal["local", "ray", "beam"] = Field("local", description="local | ray | beam")
    workers: int = Field(2, ge=1, description="local: processes (1 runs in-process); ray: CPUs of a local "
                                              "cluster; beam: task processes per Beam worker")
    address: str | None = Field(None, description="ray: an existing cluster (auto, ray://head:10001); absent: "
                                                  "a local cluster of `workers` CPUs")
    max_retries: int = Field(2, ge=0, description="attempts after the first, for a task that raises or whose "
                                                  "worker dies; then the shard is reported")
    max_tasks_per_worker: int | None = Field(None, ge=1, description="recycle worker processes (returns lxml "
                                                                     "memory)")
    max_in_flight: int | None = Field(None, ge=1, description="back-pressure: at most this many tasks submitted "
                                                              "and unfinished (default 2 x workers or CPUs)")
    runtime_env: dict | None = Field(None, description="ray: passed to ray.init (working_dir, pip, env_vars, "
                                                       "excludes, ...)")
    resources: dict[Literal[tuple(s.name for s in STAGES)], TaskResources] = Field(
        default_factory=dict, description="per stage: what one task needs, e.g. {mixture: {cpus: 4, gpus: 1}}; "
                                          "the per-document stages share one task (the largest request)")
    options: dict = Field(default_factory=dict, description="beam: PipelineOptions (runner, flink_master, "
                                                            "project, ...), checked by Beam's parser")

    @field_validator("runtime_env")
    @classmethod
    def _ray_runtime_env(cls, env: dict | None) -> dict | None:
        if env is None:
            return None
        unknown = sorted(set(env) - set(RAY_RUNTIME_ENV_KEYS))
        if unknown:
            raise ValueError(f"unknown runtime_env field(s) {unknown}; Ray knows {list(RAY_RUNTIME_ENV_KEYS)}")
        return env


class _Stages(StrictModel):
    def enabled(self) -> list[str]:
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


StagesConfig = create_model(
    "StagesConfig", __base__=_Stages,
    __doc__="The stages that run, in pipeline order; a stage that is absent does not run, `{}` takes its defaults.",
    **{s.name: (s.config | None, Field(None, description=" ".join((s.config.__doc__ or "").split())))
       for s in STAGES},
)


class ReleaseConfig(StrictModel):
    """One corpus release."""

    release: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="the release's name")
    output: str = Field(description="where it is written: a local path or an fsspec URI (s3://bucket/releases/x)")
    runner: RunnerConfig = Field(RunnerConfig(), description="where and how the tasks run")
    sources: list[SourceConfig] = Field(min_length=1, description="the inputs")
    stages: StagesConfig = Field(description="what is done to them")

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


def _format_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker for "the key itself is wrong"; the key is already named
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _validate(model: type[BaseModel], raw, path: str):
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{path}: {_format_loc(e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None


def _read_yaml(path: str) -> dict:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def load_yaml(path: str, model: type[BaseModel]):
    """A YAML file validated as `model` (the specs of `gristmill preselect train`, `dataman build`)."""
    return _validate(model, _read_yaml(path), path)


def load_config(path: str, overrides: dict | None = None) -> ReleaseConfig:
    """Reads, validates and checks the inputs of a release config; raises ConfigError."""
    raw = _interpolate(_read_yaml(path), path, ())
    for key, value in (overrides or {}).items():  # dotted keys: runner.workers=4
        node = raw
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    cfg = _validate(ReleaseConfig, raw, path)
    _check_runner(cfg.runner, path)
    _check_sources(cfg, path)
    return _check_stages(cfg, path)


def _check_stages(cfg: ReleaseConfig, path: str) -> ReleaseConfig:
    """Each configured stage's check and resolve, in pipeline order (a stage sees those before it)."""
    before = []
    for stage in STAGES:
        stage_cfg = getattr(cfg.stages, stage.name)
        if stage_cfg is None:
            continue
        ctx = CheckContext(cfg, tuple(before))
        try:
            stage_cfg = stage.resolve(stage_cfg, ctx)
            stage.check(stage_cfg, ctx)
        except ConfigError as exc:
            key = str(exc)
            raise ConfigError(f"{path}: stages.{stage.name}{'' if key.startswith('[') else '.'}{key}") from None
        cfg = cfg.model_copy(update={"stages": cfg.stages.model_copy(update={stage.name: stage_cfg})})
        before.append((stage, stage_cfg))
    return cfg


def _check_sources(cfg: ReleaseConfig, path: str) -> None:
    """Stages present, inputs exist, and every source has a stage that takes its records."""
    enabled = [s for s in STAGES if getattr(cfg.stages, s.name) is not None]
    if not enabled:
        raise ConfigError(f"{path}: stages: no stage configured (add e.g. `extract: {{}}`)")
    html_stages = [s.name for s in STAGES if s.reads_html]
    for i, src in enumerate(cfg.sources):
        if src.format in HTML_FORMATS and not any(s.reads_html for s in enabled):
            raise ConfigError(f"{path}: sources[{i}].format: '{src.format}' records are HTML and need "
                              f"`stages.{html_stages[0]}`")
        if src.format not in HTML_FORMATS and all(s.reads_html for s in enabled):
            raise ConfigError(f"{path}: sources[{i}].format: '{src.format}' is already text; "
                              f"`stages.{enabled[0].name}` does not apply to it and no other stage is configured")
        for j, pattern in enumerate(src.paths):
            if not expand_paths(pattern, src.storage_options):
                raise ConfigError(f"{path}: sources[{i}].paths[{j}]: no input file matches {pattern!r}")


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


def _check_runner(runner: RunnerConfig, path: str) -> None:
    """Engine-specific settings are checked by the engine's own parser, before any work starts."""
    engine_keys = {"ray": ("address", "runtime_env"), "beam": ("options",)}
    for kind, keys in engine_keys.items():
        for key in keys:
            if runner.kind != kind and getattr(runner, key):
                raise ConfigError(f"{path}: runner.{key}: only for kind: {kind} (this runner is {runner.kind})")
    if runner.kind == "ray":
        try:
            from ray.runtime_env import RuntimeEnv  # optional: pip install gristmill[ray]
        except ImportError:
            raise ConfigError(f"{path}: runner.kind: ray needs `pip install gristmill[ray]`") from None
        if runner.runtime_env:
            working_dir = runner.runtime_env.get("working_dir")
            if isinstance(working_dir, str) and "://" not in working_dir and not os.path.isdir(working_dir):
                raise ConfigError(f"{path}: runner.runtime_env.working_dir: not a directory: {working_dir}")
            try:
                RuntimeEnv(**runner.runtime_env)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{path}: runner.runtime_env: {exc}") from None
    if runner.kind == "beam":
        try:
            pipeline_options(runner)
        except BeamOptionsError as exc:
            raise ConfigError(f"{path}: runner.{exc.key}: {exc}") from None
