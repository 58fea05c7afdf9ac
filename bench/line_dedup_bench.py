"""line_dedup on real crawl text: a boilerplate line planted in 5 % of the documents is removed everywhere,
and no line found in `max_docs` documents or fewer is removed (checked against document frequencies
recomputed here), with throughput and peak RSS per phase.

Input: the extracted text of the crawl sample (as dedup_bench.py makes it, 1,105 pages), every 20th
document with PLANTED inserted at a random line. Runs `gristmill run` with `line_dedup: {max_docs: 20}`
on 2 workers; exits 1 if a check fails.
"""

import argparse
import json
import random
import subprocess
import sys
import unicodedata
from collections import Counter

from dedup_bench import corpus, phases
from extract_filter import ROOT, WORK, measure

sys.path.insert(0, str(ROOT))
from pipelines import stats  # noqa: E402

PLANTED = "Sign up for the Example Corp newsletter and get 10% off your next order."
MAX_DOCS, MIN_UNIT_CHARS = 20, 10
CONFIG = """release: line-dedup-bench
output: {out}
runner: {{kind: local, workers: {workers}}}
sources: [{{name: docs, paths: ["{folder}/*.jsonl"], format: jsonl}}]
stages: {{line_dedup: {{max_docs: {max_docs}}}}}
"""


def planted_corpus(args) -> list[dict]:
    source, _ = corpus(args, 1)
    records = [json.loads(line) for f in sorted(source.glob("*.jsonl")) for line in open(f)]
    rng = random.Random(0)
    for r in records[::20]:
        lines = r["text"].split("\n")
        lines.insert(rng.randrange(len(lines) + 1), PLANTED)
        r["text"] = "\n".join(lines)
    folder = WORK / "line-dedup-corpus"
    folder.mkdir(exist_ok=True)
    for i in range(args.workers):
        (folder / f"part-{i}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[i :: args.workers]))
    return records


def norm(line: str) -> str:
    return " ".join(unicodedata.normalize("NFC", line).split())


def expected(records: list[dict]) -> tuple[dict[str, str], Counter]:
    """Texts with every line found in more than MAX_DOCS documents dropped, and the document frequencies."""
    df = Counter(n for r in records for n in {norm(line) for line in r["text"].split("\n")})
    texts = {}
    for r in records:
        lines = r["text"].split("\n")
        keep = [i for i, line in enumerate(lines) if len(norm(line)) < MIN_UNIT_CHARS or df[norm(line)] <= MAX_DOCS]
        texts[r["id"]] = "".join(lines[i] + ("\n" if i < len(lines) - 1 else "") for i in keep)
    return texts, df


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=str(ROOT.parent / "shared/data/crawl-sample/*.warc.gz"))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    records = planted_corpus(args)
    out = WORK / "line-dedup-out"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    config = WORK / "line-dedup-bench.yaml"
    config.write_text(CONFIG.format(out=out, workers=args.workers, folder=WORK / "line-dedup-corpus",
                                    max_docs=MAX_DOCS))
    result = measure([str(ROOT / ".venv/bin/gristmill"), "run", str(config), "--quiet"])
    con = stats.connect(str(out))
    kept = dict(con.execute("SELECT id, text FROM docs_line_dedup").fetchall())
    rejects = dict(con.execute("SELECT id, reason FROM rejects WHERE stage = 'line_dedup'").fetchall())
    texts, df = expected(records)
    planted = [r["id"] for r in records if PLANTED in r["text"]]
    chars_in = sum(len(r["text"]) for r in records)
    chars_out = sum(len(t) for t in kept.values())
    frequent = sorted((n for n, c in df.items() if c > MAX_DOCS and len(n) >= MIN_UNIT_CHARS), key=lambda n: -df[n])
    print(f"{len(records)} documents, {chars_in / 1e6:.1f} M characters; {result['seconds']:.1f} s on "
          f"{args.workers} workers = {len(records) / result['seconds'] / args.workers:.0f} docs/s per core, "
          f"peak RSS {result['peak_rss_worker_mb']:.0f} MB per process")
    print("phases: " + ", ".join(f"{p} {wall:.1f}s {rss:.0f} MB" for p, (wall, rss) in phases(out).items()))
    print(f"lines found in more than {MAX_DOCS} documents: {len(frequent)}; characters removed "
          f"{(chars_in - chars_out) / chars_in:.1%}; boilerplate-only rejects {len(rejects)}")
    for line in frequent[:5]:
        print(f"  {df[line]:>4} documents: {line[:90]!r}")
    checks = {
        f"planted line ({len(planted)} documents, {len(planted) / len(records):.1%}) removed everywhere":
            not any(PLANTED in t for t in kept.values()) and df[PLANTED] == len(planted),
        f"no line in <= {MAX_DOCS} documents removed (every kept text as recomputed)":
            all(kept[i] == texts[i] for i in kept),
        "every document kept or a boilerplate_only reject": set(kept) | set(rejects) == set(texts)
            and set(rejects.values()) <= {"boilerplate_only"},
    }
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
