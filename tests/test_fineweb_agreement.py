"""The filter's default recipe takes FineWeb's decisions: datatrove's chain (GopherRepetition ->
GopherQuality -> C4QualityFilter(filter_no_terminal_punct=False) -> FineWebQuality), recorded on the
pages of tests/data/sample by bench/filter_agreement.py --record, against ours on the same pages."""

import json

from pipelines.readers import SourceConfig, read_shard
from pipelines.stages import extract
from pipelines.stages import filter as filter_stage
from tests.conftest import ROOT


def sample_pages() -> list[dict]:
    """The pages of tests/data/sample as our extract stage extracts them (as the recording did)."""
    records = []
    for path in sorted((ROOT / "tests/data/sample").glob("*.warc.gz")):
        records += read_shard(SourceConfig(name="sample", paths=[str(path)], format="warc"), str(path), [])
    return [d for d in extract.run(records, extract.ExtractConfig()).docs if d["text"].strip()]


def test_verdicts_agree_with_datatrove():
    recorded = {r["id"]: r for r in map(json.loads, open(ROOT / "tests/data/fineweb_verdicts.jsonl"))}
    pages = sample_pages()
    assert {d["id"] for d in pages} == set(recorded)
    cfg = filter_stage.FilterConfig(language={"enabled": False}, url_blocklist={"enabled": False},
                                    pii={"enabled": False})
    result = filter_stage.run(pages, cfg)
    ours = {d["id"]: None for d in result.docs} | {r["id"]: r["reason"].split(".")[0] for r in result.rejects}
    keep = sum((ours[i] is None) == r["keep"] for i, r in recorded.items()) / len(recorded)
    block = sum(ours[i] == r["block"] for i, r in recorded.items()) / len(recorded)
    assert keep >= 0.99 and block >= 0.97, (keep, block)
    assert sum(r["keep"] for r in recorded.values()) > 50  # the pages exercise both verdicts
