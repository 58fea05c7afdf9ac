"""The band index a finished release keeps (OUT/dedup/_bands, _sig, _index.json), so a later release
can remove documents already shipped (`stages.dedup.against`) without recomputing the old one."""

import json

import fsspec
import pyarrow.parquet as pq

from pipelines import io


class IndexError_(ValueError):
    """A missing, corrupt or incompatible dedup index (raised before any work starts)."""


def index_params(cfg) -> dict:
    """What must match for two releases' band keys to be comparable (not verification or cluster mode)."""
    m = cfg.minhash.model_dump(mode="json", exclude={"verify", "verify_threshold", "max_pairs_per_member"})
    return {"version": 1, "exact": cfg.exact, "minhash": m, "buckets": cfg.buckets}


def check_index(release: str, cfg) -> None:
    path = io.join(release, "dedup", "_index.json")
    if not io.exists(path):
        raise IndexError_(f"no dedup index at {path} (was the release built with stages.dedup?)")
    try:
        found = io.read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexError_(f"{path} is corrupt: {exc}") from None
    wanted = index_params(cfg)
    if found.get("params") != wanted:
        raise IndexError_(f"{path} was built with other MinHash settings: {found.get('params')} != {wanted}")
    root = io.join(release, "dedup")
    for f in io.glob(root, "_bands/*/*.parquet") + io.glob(root, "_sig/*.parquet"):
        try:
            with fsspec.open(f, "rb") as fh:
                pq.read_metadata(fh)
        except Exception as exc:  # noqa: BLE001 - any unreadable file makes the index unusable
            raise IndexError_(f"{f} is not a readable Parquet file: {exc}") from None
