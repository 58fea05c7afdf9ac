"""Dedup quality on the extracted text of the crawl sample: recall and precision against exact Jaccard.

Ground truth: every pair of documents whose exact Jaccard on the same shingles (normalised word
5-grams, as the dedup stage uses) is >= 0.8, found exhaustively (all pairs whose sizes allow it).
Recall: share of those pairs of which at least one document is removed (never both shipped).
Precision: share of removed documents with a true near-duplicate (Jaccard >= 0.7) in their cluster;
keeper precision: share of removed documents with Jaccard >= 0.7 to their `duplicate_of`. Runs the
stage at its defaults and as it was before (no verification, connected components). Prints the
S-curve too.
"""

import argparse
import subprocess
import sys

import numpy as np
from extract_filter import ROOT, WORK

sys.path.insert(0, str(ROOT))
from pipelines import stats  # noqa: E402
from pipelines.dedup import minhash  # noqa: E402

CONFIG = """release: dedup-quality
output: {out}
runner: {{kind: local, workers: 2}}
sources: [{{name: crawl, paths: ["{input}"], format: warc}}]
stages:
  extract: {{}}
  dedup: {dedup}
"""
SETTINGS = {"defaults": "{}", "unverified components": "{minhash: {verify: false}, cluster: components}"}


def run(args, name: str):
    out = WORK / f"dedup-quality-{name.replace(' ', '-')}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    config = WORK / f"{out.name}.yaml"
    config.write_text(CONFIG.format(out=out, input=args.input, dedup=SETTINGS[name]))
    subprocess.run([str(ROOT / ".venv/bin/gristmill"), "run", str(config), "--quiet"], check=True,
                   capture_output=True, cwd=ROOT)
    con = stats.connect(str(out))
    cluster = {i: i for (i,) in con.execute("SELECT id FROM docs_dedup").fetchall()}
    cluster.update(dict(con.execute("SELECT id, duplicate_of FROM rejects WHERE reason='duplicate'").fetchall()))
    texts = dict(con.execute("SELECT id, text FROM docs_extract").fetchall())
    return cluster, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=str(ROOT.parent / "shared/data/crawl-sample/*.warc.gz"))
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    print("S-curve, 14 bands x 8 rows: P(candidate) at Jaccard",
          ", ".join(f"{s:.2f}: {p:.3f}" for s, p in zip(np.arange(0.5, 1.01, 0.1),
                                                        minhash.s_curve(np.arange(0.5, 1.01, 0.1), 14, 8))))
    truth_texts = None
    for name in SETTINGS:
        cluster, texts = run(args, name)
        if truth_texts is None:
            truth_texts = texts
            shingles = {i: set(minhash.shingle_hashes(minhash.normalize(t), 5).tolist()) for i, t in texts.items()}

            def jac(a, b, shingles=shingles):
                sa, sb = shingles[a], shingles[b]
                return len(sa & sb) / len(sa | sb) if sa or sb else 1.0

            ids = sorted(shingles, key=lambda i: len(shingles[i]))
            truth = set()
            for x, a in enumerate(ids):  # sizes sorted: stop once b is too large to reach 0.8
                for b in ids[x + 1:]:
                    if len(shingles[a]) < 0.8 * len(shingles[b]):
                        break
                    if shingles[a] and jac(a, b) >= 0.8:
                        truth.add((a, b))
            print(f"documents: {len(ids)}, true pairs with Jaccard >= 0.8: {len(truth)}")
        recall = sum(cluster[a] != a or cluster[b] != b for a, b in truth) / max(len(truth), 1)
        members = {}
        for doc, c in cluster.items():
            members.setdefault(c, []).append(doc)
        removed = [d for d, c in cluster.items() if c != d]
        precision = sum(any(jac(d, o) >= 0.7 for o in members[cluster[d]] if o != d) for d in removed)
        keeper = sum(jac(d, cluster[d]) >= 0.7 for d in removed)
        n = max(len(removed), 1)
        print(f"{name:<22} removed {len(removed)}, recall {recall:.4f}, precision {precision / n:.4f}, "
              f"keeper precision {keeper / n:.4f}")


if __name__ == "__main__":
    main()
