"""DataMan students: one fastText classifier per rating (classes 1-5) and one for the domain, trained
on the teacher's labels, with held-out accuracy against the majority class reported per model."""

import hashlib
import json
import os

import numpy as np

from scorers import fasttext_model, langid
from scorers.dataman import CRITERIA, RATINGS

COLUMNS = {**{c: f"dataman_{c}" for c in CRITERIA}, "overall_score": "dataman_overall", "domain": "domain"}
DATAMAN_COLUMNS = tuple(c for c in COLUMNS.values() if c != "domain")  # the ratings, 1-5


def _label(result: dict, name: str) -> str:
    return result["domain"] if name == "domain" else str(result["ratings"][name])


def train_students(texts: list[str], results: list[dict], out_dir: str, *, lr: float = 0.5, epoch: int = 25,
                   bucket: int = 200_000) -> dict:
    """texts[i] was rated as results[i]; failed ratings are left out. Writes <out_dir>/<name>.bin + report.json."""
    rated = [(t, r) for t, r in zip(texts, results) if r.get("ratings")]
    rated.sort(key=lambda tr: hashlib.sha1(tr[0].encode()).hexdigest())  # a content-seeded split
    cut = int(len(rated) * 0.8)
    train, held = rated[:cut], rated[cut:]
    os.makedirs(out_dir, exist_ok=True)
    report = {"documents": {"rated": len(rated), "failed": len(results) - len(rated), "held_out": len(held)},
              "languages": langid.language_counts([t for t, _ in rated])}
    for name in RATINGS + ("domain",):
        model = fasttext_model.train_supervised([t for t, _ in train], [_label(r, name) for _, r in train],
                                                os.path.join(out_dir, f"{name}.bin"), lr=lr, epoch=epoch,
                                                bucket=bucket)
        truth = [_label(r, name) for _, r in held]
        predicted = [row[0] for row in model.predict_batch([t for t, _ in held], k=1)[0]]
        majority = max((truth.count(v) for v in set(truth)), default=0) / max(len(truth), 1)
        report[name] = {"held_out_accuracy": round(float(np.mean([p == y for p, y in zip(predicted, truth)])), 4)
                        if truth else None, "majority_class": round(majority, 4)}
    with open(os.path.join(out_dir, "report.json"), "w") as fh:
        json.dump(report, fh, indent=2, sort_keys=True)
    return report


class Students:
    def __init__(self, model_dir: str):
        files = [f"{n}.bin" for n in RATINGS + ("domain",)] + ["report.json"]
        missing = [f for f in files if not os.path.isfile(os.path.join(model_dir, f))]
        if missing:
            raise FileNotFoundError(f"{model_dir}: DataMan student models missing: {missing} "
                                    "(made by `gristmill dataman build`)")
        self.model_dir = model_dir
        with open(os.path.join(model_dir, "report.json")) as fh:
            self.languages = json.load(fh).get("languages")

    def rate(self, texts: list[str]) -> list[dict]:
        """Per text: {dataman_<criterion>: 1-5, dataman_overall: 1-5, domain: str}."""
        out = [{} for _ in texts]
        for name, column in COLUMNS.items():
            labels, _ = fasttext_model.load(os.path.join(self.model_dir, f"{name}.bin")).predict_batch(texts, k=1)
            for row, label in zip(out, labels):
                row[column] = label[0] if name == "domain" else int(label[0])
        return out
