"""Agreement of the filter stage (recipe fineweb) with datatrove's FineWeb chain, and speed per document.

datatrove 0.10.1's chain, in bench/.venv-peers: GopherRepetitionFilter -> GopherQualityFilter ->
C4QualityFilter(filter_no_terminal_punct=False) -> FineWebQualityFilter, each with its defaults, called
document by document (no executor, no writer). Ours: the filter stage with `language`, `url_blocklist`
and `pii` off, run in batches of 1,000. Both sides are timed in their own process after a warm-up
document (imports and tokenizer loading left out; word caches start empty).

  filter_agreement.py                 the dev crawl's pages (bench/tokenize_bench.py's page_texts):
                                      agreement on keep/reject and on the first failing block, speed
  filter_agreement.py --record        the pages of tests/data/sample/*.warc.gz as our extract stage
                                      extracts them: writes datatrove's verdicts to
                                      tests/data/fineweb_verdicts.jsonl (tests/test_fineweb_agreement.py)
  filter_agreement.py --datatrove IN OUT   (run by the above in the peers' venv)

Exits 1 when a target is missed (keep/reject >= 99 %, first failing block >= 97 %, speed >= 2x).
"""

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "_work"
PEERS_PYTHON = HERE / ".venv-peers/bin/python"
VERDICTS = ROOT / "tests/data/fineweb_verdicts.jsonl"
BLOCKS = ("gopher_repetition", "gopher_quality", "c4", "fineweb")  # datatrove's chain, in order
WARM_UP = "The server writes a line to the log for every request. " * 20


def datatrove_verdicts(pages_file: str, out_file: str) -> None:
    """In the peers' venv: datatrove's chain over the pages; one line per page, then the seconds."""
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    chain = [GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(filter_no_terminal_punct=False),
             FineWebQualityFilter()]

    def verdict(doc):
        for block, step in zip(BLOCKS, chain):
            result = step.filter(doc)
            if result is not True:
                return block, result[1] if isinstance(result, tuple) else None
        return None, None

    verdict(Document(text=WARM_UP, id="warm-up"))
    pages = [json.loads(line) for line in open(pages_file)]
    rows, began = [], time.perf_counter()
    for page in pages:
        block, reason = verdict(Document(text=page["text"], id=page["id"]))
        rows.append({"id": page["id"], "keep": block is None, "block": block, "reason": reason})
    seconds = time.perf_counter() - began
    with open(out_file, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    print(json.dumps({"seconds": seconds}))


def our_verdicts(pages: list[tuple[str, str]]) -> tuple[dict[str, dict], float]:
    sys.path.insert(0, str(ROOT))
    from pipelines.stages import filter as filter_stage

    cfg = filter_stage.FilterConfig(language={"enabled": False}, url_blocklist={"enabled": False},
                                    pii={"enabled": False})

    def docs(batch):
        return [{"id": i, "text": t, "url": "", "source": "s", "input_file": "f", "input_offset": 0} for i, t in batch]

    filter_stage.run(docs([("warm-up", WARM_UP)]), cfg)
    verdicts, began = {}, time.perf_counter()
    for at in range(0, len(pages), 1000):
        result = filter_stage.run(docs(pages[at : at + 1000]), cfg)
        verdicts.update({d["id"]: {"keep": True, "block": None, "reason": None} for d in result.docs})
        for row in result.rejects:
            block, _, reason = row["reason"].partition(".")
            verdicts[row["id"]] = {"keep": False, "block": block, "reason": reason or block}
        assert not result.errors, result.errors[:3]
    return verdicts, time.perf_counter() - began


def run_datatrove(pages: list[tuple[str, str]]) -> tuple[dict[str, dict], float]:
    WORK.mkdir(exist_ok=True)
    pages_file, out_file = WORK / "agreement-pages.jsonl", WORK / "agreement-datatrove.jsonl"
    with open(pages_file, "w") as fh:
        for i, t in pages:
            fh.write(json.dumps({"id": i, "text": t}) + "\n")
    done = subprocess.run([str(PEERS_PYTHON), __file__, "--datatrove", str(pages_file), str(out_file)],
                          check=True, capture_output=True, text=True)
    seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    return {r["id"]: r for r in map(json.loads, open(out_file))}, seconds


def sample_pages() -> list[tuple[str, str]]:
    """(id, text) of the pages of tests/data/sample as our extract stage extracts them."""
    sys.path.insert(0, str(ROOT))
    from pipelines.readers import SourceConfig, read_shard
    from pipelines.stages import extract

    records = []
    for path in sorted((ROOT / "tests/data/sample").glob("*.warc.gz")):
        records += read_shard(SourceConfig(name="sample", paths=[str(path)], format="warc"), str(path), [])
    return [(d["id"], d["text"]) for d in extract.run(records, extract.ExtractConfig()).docs if d["text"].strip()]


_REASONS = {"gopher_short_doc": "min_doc_words", "gopher_long_doc": "max_doc_words",
            "gopher_below_avg_threshold": "min_avg_word_length", "gopher_above_avg_threshold": "max_avg_word_length",
            "gopher_too_many_hashes": "hash_word_ratio", "gopher_too_many_ellipsis": "ellipsis_word_ratio",
            "gopher_too_many_bullets": "max_bullet_lines_ratio",
            "gopher_too_many_end_ellipsis": "max_ellipsis_lines_ratio",
            "gopher_below_alpha_threshold": "min_alpha_words_ratio", "gopher_enough_stop_words": "min_stop_words",
            "too_few_sentences": "min_num_sentences"}


def our_reason(datatrove_reason: str | None) -> str | None:
    """datatrove's reason as ours names it (top_2_gram -> top_2_gram_char_frac, ...)."""
    if datatrove_reason is None:
        return None
    if datatrove_reason.startswith("top_"):
        return datatrove_reason + "_char_frac"
    if datatrove_reason.startswith("duplicated_"):
        return f"dup_{datatrove_reason.split('_')[1]}_gram_char_frac"
    return _REASONS.get(datatrove_reason, datatrove_reason)


def compare(ours: dict, theirs: dict) -> dict:
    ids = sorted(theirs)
    keep = sum(ours[i]["keep"] == theirs[i]["keep"] for i in ids)
    block = sum(ours[i]["block"] == theirs[i]["block"] for i in ids)  # None = kept
    reason = sum(ours[i]["reason"] == our_reason(theirs[i]["reason"]) for i in ids)
    confusion = Counter((theirs[i]["block"] or "keep", ours[i]["block"] or "keep") for i in ids
                        if ours[i]["block"] != theirs[i]["block"])
    return {"pages": len(ids), "keep_agreement": keep / len(ids), "block_agreement": block / len(ids),
            "reason_agreement": reason / len(ids),
            "kept_ours": sum(ours[i]["keep"] for i in ids), "kept_datatrove": sum(theirs[i]["keep"] for i in ids),
            "differences (datatrove -> ours)": {f"{a} -> {b}": n for (a, b), n in confusion.most_common()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="write tests/data/fineweb_verdicts.jsonl")
    parser.add_argument("--datatrove", nargs=2, metavar=("PAGES", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--input", default=str(ROOT.parent / "shared/data/crawl-sample/*.warc.gz"))
    args = parser.parse_args()
    if args.datatrove:
        return datatrove_verdicts(*args.datatrove)
    if args.record:
        pages = sample_pages()
        theirs, _ = run_datatrove(pages)
        with open(VERDICTS, "w") as fh:
            for i, _ in pages:
                fh.write(json.dumps({"id": i, **{k: theirs[i][k] for k in ("keep", "block", "reason")}}) + "\n")
        print(f"wrote {VERDICTS.relative_to(ROOT)}: {len(pages)} pages, {sum(theirs[i]['keep'] for i, _ in pages)} "
              "kept by datatrove")
    else:
        sys.path.insert(0, str(HERE))
        from tokenize_bench import page_texts

        pages = page_texts(args)
    theirs, their_seconds = run_datatrove(pages)
    ours, our_seconds = our_verdicts(pages)
    result = compare(ours, theirs)
    result |= {"seconds_ours": round(our_seconds, 2), "seconds_datatrove": round(their_seconds, 2),
               "speed_ratio": round(their_seconds / our_seconds, 2)}
    print(json.dumps(result, indent=2))
    failed = [name for name, ok in [("keep/reject", result["keep_agreement"] >= 0.99),
                                    ("first failing block", result["block_agreement"] >= 0.97),
                                    ("speed", result["speed_ratio"] >= 2)] if not ok]
    if failed:
        sys.exit(f"missed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
