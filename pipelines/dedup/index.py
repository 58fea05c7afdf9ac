"""The band index a finished release keeps (OUT/dedup/_bands, _sig, _index.json), so a later release
can remove documents already shipped (`stages.dedup.against`) without recomputing the old one."""

from pipelines import io
from pipelines.earlier import check_index as check_earlier_index


def index_params(cfg) -> dict:
    """What must match for two releases' band keys to be comparable (not verification or cluster mode)."""
    m = cfg.minhash.model_dump(mode="json", exclude={"verify", "verify_threshold", "max_pairs_per_member"})
    return {"version": 1, "exact": cfg.exact, "minhash": m, "buckets": cfg.buckets}


def check_index(release: str, cfg) -> None:
    """The earlier release's band index exists, is readable and has comparable keys; raises ValueError."""
    root = io.join(release, "dedup")
    files = io.glob(root, "_bands/*/*.parquet") + io.glob(root, "_sig/*.parquet")
    check_earlier_index(release, "dedup", index_params(cfg), "MinHash settings", files)
