"""Earlier releases named in a stage's `against` (dedup, line_dedup): a glob expands, when the config
is loaded, to the finished releases it matches (those holding the stage's index file), never to the
release being built; a glob may match nothing (the first release of a series)."""

import json
import os

import fsspec
import pyarrow.parquet as pq

from pipelines import io


def location(path: str) -> str:
    """A release's folder or URI in one spelling, to compare two of them."""
    return path.rstrip("/") if "://" in path else os.path.abspath(path)


def expand_against(against: list[str], output: str, index: str) -> list[str]:
    """`against` with its globs expanded; `index` is the index file's path inside a release."""
    own = location(output)
    releases: list[str] = []
    for pattern in against:
        if not io.is_glob(pattern):
            releases.append(pattern)
            continue
        found = [p[: -len(f"/{index}")] for p in io.expand_paths(f"{pattern.rstrip('/')}/{index}")]
        releases += [r for r in found if location(r) != own and r not in releases]
    return releases


def check_index(release: str, stage: str, wanted: dict, what: str, files: list[str]) -> None:
    """An earlier release's index of `stage` (OUT/<stage>/_index.json) is there, readable, built with the
    `wanted` params (`what` names them in the error), and its Parquet `files` are readable; raises
    ValueError naming the file."""
    index = io.join(release, stage, "_index.json")
    if not io.exists(index):
        raise ValueError(f"no {stage} index at {index} (was the release built with stages.{stage}?)")
    try:
        found = io.read_json(index)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{index} is corrupt: {exc}") from None
    params = found.get("params") if isinstance(found, dict) else found
    if params != wanted:
        raise ValueError(f"{index} was built with other {what}: {params} != {wanted}")
    for f in files:
        try:
            with fsspec.open(f, "rb") as fh:
                pq.read_metadata(fh)
        except Exception as exc:  # noqa: BLE001 - a missing or unreadable file makes the index unusable
            raise ValueError(f"{f} is not a readable Parquet file: {exc}") from None
