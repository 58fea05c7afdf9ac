"""Release config: one YAML per corpus release, validated with pydantic before any work starts.

This module holds the release and runner schemas and the loader; each stage's schema and checks
live with the stage (`pipelines.registry`), each source's with the readers. Every error names the
file, the key and the reason. Inputs are expanded (globs, fsspec URIs) here too, so a missing input
fails at `gristmill validate`, not an hour into a run.
"""

import os
import re
from typing import Literal

import fsspec
import yaml
from fsspec.utils import glob_translate
from pydantic import BaseModel, Field, ValidationError, create_model, field_validator

from pipelines.errors import ConfigError
from pipelines.io import expand_paths, is_glob, sha256_json
from pipelines.readers import HTML_FORMATS, SourceConfig
from pipelines.registry import STAGES
from pipelines.runners.beam_options import BeamOptionsError, pipeline_options
from pipelines.spill import not_fingerprinted
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

    def output_config(self) -> dict:
        """The config as far as it determines the output bytes: not where or how it runs (runner, output,
        settings marked not fingerprinted such as the global steps' memory limits)."""
        return _determining(self, self.model_dump(mode="json", exclude={"runner", "output"}))

    def content_hash(self) -> str:
        return sha256_json(self.output_config())


def _determining(model: BaseModel, data: dict) -> dict:
    for name, spec in type(model).model_fields.items():
        value = getattr(model, name)
        if not_fingerprinted(spec):
            data.pop(name, None)
        elif isinstance(value, BaseModel) and isinstance(data.get(name), dict):
            _determining(value, data[name])
    return data


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


MAX_CONFIG_BYTES = 1 << 20  # a config is a page of YAML; more is a mistake (or /dev/zero)
MAX_YAML_NODES = 100_000  # values after alias expansion: a "billion laughs" file fails here, in milliseconds
MAX_YAML_DEPTH = 64


def _read_yaml(path: str) -> dict:
    try:
        with open(path, "rb") as fh:
            text = fh.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: config file not readable: {exc.strerror or exc}") from None
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: config file larger than {MAX_CONFIG_BYTES} bytes")
    try:
        loader = yaml.SafeLoader(text)  # as yaml.safe_load, with the size checked between compose and construct
        try:
            node = loader.get_single_node()
            _check_size(node, path)
            raw = None if node is None else loader.construct_document(node)
        finally:
            loader.dispose()
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply (more than {MAX_YAML_DEPTH} levels)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def _check_size(root, path: str) -> None:
    """Bounds what the YAML expands to before anything is built from it: aliases reuse one node, so
    sizes are counted once per node (linear time) but add up as often as the node is referenced."""
    sizes: dict[int, tuple[int, int] | None] = {}  # id(node) -> (values after expansion, depth); None: open

    def measure(node) -> tuple[int, int]:
        if id(node) in sizes:
            if sizes[id(node)] is None:
                raise ConfigError(f"{path}: a YAML alias refers to the value that contains it")
            return sizes[id(node)]
        sizes[id(node)] = None
        children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else (
            node.value if isinstance(node, yaml.SequenceNode) else [])
        count, depth = 1, 0
        for child in children:
            n, d = measure(child)
            count, depth = count + n, max(depth, d)
            if count > MAX_YAML_NODES:
                raise ConfigError(f"{path}: YAML expands to more than {MAX_YAML_NODES} values (aliases repeated "
                                  "too often)")
            if depth >= MAX_YAML_DEPTH:
                raise ConfigError(f"{path}: YAML nested too deeply (more than {MAX_YAML_DEPTH} levels)")
        sizes[id(node)] = (count, depth + 1)
        return sizes[id(node)]

    if root is not None:
        measure(root)


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
    inputs = _check_sources(cfg, path)
    _check_output(cfg.output, inputs, [p for src in cfg.sources for p in src.paths], path)
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


def _check_sources(cfg: ReleaseConfig, path: str) -> list[str]:
    """Stages present, inputs exist and can be read, and every source has a stage that takes its
    records. Returns the input files."""
    enabled = [s for s in STAGES if getattr(cfg.stages, s.name) is not None]
    if not enabled:
        raise ConfigError(f"{path}: stages: no stage configured (add e.g. `extract: {{}}`)")
    html_stages = [s.name for s in STAGES if s.reads_html]
    inputs = []
    for i, src in enumerate(cfg.sources):
        if src.format in HTML_FORMATS and not any(s.reads_html for s in enabled):
            raise ConfigError(f"{path}: sources[{i}].format: '{src.format}' records are HTML and need "
                              f"`stages.{html_stages[0]}`")
        if src.format not in HTML_FORMATS and all(s.reads_html for s in enabled):
            raise ConfigError(f"{path}: sources[{i}].format: '{src.format}' is already text; "
                              f"`stages.{enabled[0].name}` does not apply to it and no other stage is configured")
        for j, pattern in enumerate(src.paths):
            files = expand_paths(pattern, src.storage_options)
            if not files:
                raise ConfigError(f"{path}: sources[{i}].paths[{j}]: no input file matches {pattern!r}")
            fs, _ = fsspec.core.url_to_fs(files[0], **src.storage_options)
            for file in files:
                try:
                    fs.size(file)  # a broken link or a symlink loop fails here, not in the run
                except OSError as exc:
                    raise ConfigError(f"{path}: sources[{i}].paths[{j}]: {file}: not readable: "
                                      f"{exc.strerror or exc}") from None
            inputs += files
    return inputs


RELEASE_ENTRIES = {"manifest.json", "_logs", "_lock", "read", *(s.name for s in STAGES)}


def _check_output(output: str, inputs: list[str], patterns: list[str], path: str) -> None:
    """The output is a new folder, or one that holds a release: never `""`, `/`, a file or a folder of
    other things (a run deletes the `.tmp-*` files under it), and never where the inputs are read from
    (a rerun would read its own outputs)."""
    if not output.strip():
        raise ConfigError(f"{path}: output: empty (give the release's folder)")
    fs, root = fsspec.core.url_to_fs(output)
    local = "://" not in output
    root = os.path.abspath(root) if local else root.rstrip("/")
    if not root.strip("/"):
        raise ConfigError(f"{path}: output: {output!r} is the root of a filesystem (give the release's folder)")
    if fs.isfile(root):
        raise ConfigError(f"{path}: output: {output!r} is an existing file")
    under = [f for f in inputs if _inside(os.path.abspath(f) if local and "://" not in f else f, root)]
    if under:
        raise ConfigError(f"{path}: output: {output!r} contains an input ({under[0]}); a rerun would read "
                          f"its own outputs")
    if fs.isdir(root):
        entries = {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)}
        if entries and not entries & RELEASE_ENTRIES:
            raise ConfigError(f"{path}: output: {output!r} holds files that are not a gristmill release "
                              f"(e.g. {sorted(entries)[0]!r}); give a new or empty folder")
    probes = [f"{root}/{name}/part-00000.parquet" for name in RELEASE_ENTRIES] + [f"{root}/manifest.json"]
    for pattern in patterns:
        absolute = os.path.abspath(pattern) if local and "://" not in pattern else pattern
        if is_glob(pattern) and any(re.match(glob_translate(absolute), probe) for probe in probes):
            raise ConfigError(f"{path}: output: {output!r} is matched by the input glob {pattern!r}; a rerun "
                              f"would read its own outputs")


def _inside(file: str, folder: str) -> bool:
    return file == folder or file.startswith(folder.rstrip("/") + "/")


_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")


def _interpolate(node, path: str, loc: tuple):
    """`${VAR}` in string values takes the environment's value (`$$` is a `$`), so one config serves
    every scheduled release (`output: releases/web-${RELEASE_DATE}`). As in POSIX shells,
    `${VAR:-default}` takes the default when VAR is unset or empty, `${VAR-default}` only when unset."""
    if isinstance(node, dict):
        return {k: _interpolate(v, path, loc + (k,)) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, path, loc + (i,)) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def value(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, default = match.groups()
        value = os.environ.get(name)
        if value is not None and not (op == ":-" and value == ""):
            return value
        if op is not None:
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
