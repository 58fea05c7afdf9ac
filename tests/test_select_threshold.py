"""select's top_fraction: the threshold is measured at release time on the pool entering select."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipelines import report, stats
from pipelines.config import ConfigError, load_config
from pipelines.release import run_release
from scorers import preselect
from tests.conftest import ROOT

TOP_HALF = "[{column: preselect_score, top_fraction: 0.5}]"


def _pool(folder: Path, files: int = 2) -> list[dict]:
    """The Python docs cut into ~600-character documents, dealt over `files` JSONL files."""
    docs = []
    for line in (ROOT / "tests/data/validation/python-docs.jsonl").read_text().splitlines():
        text = json.loads(line)["text"]
        docs += [{"id": f"doc-{len(docs) + k:04d}", "text": text[at: at + 600]}
                 for k, at in enumerate(range(0, len(text), 600))]
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        (folder / f"pool-{f}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs[f::files]))
    return docs


def _model(folder: Path, original: Path, trained_ids: list[str]) -> Path:
    """The sample model with a sidecar whose recorded threshold keeps everything (the old behaviour)."""
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "m.bin"
    shutil.copy(original, model)
    info = json.loads(Path(f"{original}.json").read_text())
    info.update(thresholds={"0.5": 0.0}, trained_ids=trained_ids)
    Path(f"{model}.json").write_text(json.dumps(info))
    return model


def _config(tmp: Path, name: str, inputs: Path, model: Path, select: str = TOP_HALF, workers: int = 2):
    path = tmp / f"{name}.yaml"
    path.write_text(f"""
release: {name}
output: {tmp / name}
runner: {{kind: local, workers: {workers}}}
sources: [{{name: docs, paths: ["{inputs}/*.jsonl"], format: jsonl}}]
stages:
  score: {{preselect: {{model: {model}}}, flag_languages: false}}
  select: {select}
""")
    return load_config(str(path))


def _scored(output: str) -> dict[str, tuple[float, int]]:
    rows = stats.connect(output).execute("SELECT id, preselect_score, text FROM docs_score").fetchall()
    return {i: (score, len(text)) for i, score, text in rows}


def _kept(output: str) -> set[str]:
    return {i for (i,) in stats.connect(output).execute("SELECT id FROM docs_select").fetchall()}


def _thresholds(output: str) -> dict:
    return json.loads((Path(output) / "select/_thresholds.json").read_text())["rules"]


@pytest.fixture(scope="module")
def released(tmp_path_factory, sample_preselect_model):
    tmp = tmp_path_factory.mktemp("select")
    _pool(tmp / "pool")
    model = _model(tmp / "model", sample_preselect_model, [])
    cfg = _config(tmp, "two", tmp / "pool", model)
    log = run_release(cfg, progress=False)
    return tmp, cfg, log


def test_top_fraction_keeps_that_share_of_the_pool(released):
    """The recorded threshold (0.0) would keep every document; the pool's own keeps about half the characters."""
    _, cfg, _ = released
    scored, kept = _scored(cfg.output), _kept(cfg.output)
    share = sum(scored[i][1] for i in kept) / sum(chars for _, chars in scored.values())
    assert 0.45 <= share <= 0.6, share
    measured = _thresholds(cfg.output)["0"]
    assert measured["sampled"] == measured["documents"] == len(scored) and measured["excluded_trained"] == 0
    manifest = json.loads((Path(cfg.output) / "manifest.json").read_text())
    assert manifest["select_thresholds"]["0"] == measured
    assert "<table id='select_thresholds'>" in report.render(cfg.output)
    assert stats.funnel(cfg.output)["adds_up"]


def test_document_at_the_threshold_is_kept(released):
    _, cfg, _ = released
    scored, kept = _scored(cfg.output), _kept(cfg.output)
    threshold = _thresholds(cfg.output)["0"]["threshold"]
    assert kept == {i for i, (score, _) in scored.items() if score >= threshold}
    assert any(score == threshold for score, _ in scored.values())  # a document's own score, at its rounding
    assert threshold == preselect.threshold_for_fraction(np.array([s for s, _ in scored.values()]),
                                                         np.array([c for _, c in scored.values()]), 0.5)


def test_same_bytes_with_one_worker_and_rerun_skips_the_thresholds(released, tmp_path):
    tmp, cfg, log = released
    assert [r["skipped"] for r in log["reports"] if r["phase"].endswith("select thresholds")] == [False]
    one = _config(tmp_path, "two", tmp / "pool", Path(cfg.stages.score.preselect.model), workers=1)
    run_release(one, progress=False)
    assert _tree(Path(one.output)) == _tree(Path(cfg.output))
    again = run_release(cfg, progress=False)
    assert again["skipped"] == again["tasks"]
    assert [r["phase"].split(": ")[1] for r in again["reports"]].count("select thresholds") == 1


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "_logs" not in p.parts}


def test_trained_ids_are_left_out_of_the_sample(tmp_path, sample_preselect_model):
    docs = _pool(tmp_path / "pool")
    scores = preselect.PreSelectScorer.load(str(sample_preselect_model)).score([d["text"] for d in docs])
    scores = scores.round(preselect.SCORE_DECIMALS)
    best = np.argsort(-scores, kind="stable")[: len(docs) // 3]  # the classifier "trained" on the best third
    trained = sorted(docs[i]["id"] for i in best)
    cfg = _config(tmp_path, "t", tmp_path / "pool", _model(tmp_path / "model", sample_preselect_model, trained))
    run_release(cfg, progress=False)
    measured = _thresholds(cfg.output)["0"]
    assert measured["excluded_trained"] == len(trained) and measured["sampled"] == len(docs) - len(trained)
    rest = np.setdiff1d(np.arange(len(docs)), best)
    chars = np.array([len(d["text"]) for d in docs])
    expected = preselect.threshold_for_fraction(scores[rest], chars[rest], 0.5)
    assert measured["threshold"] == expected
    assert expected < preselect.threshold_for_fraction(scores, chars, 0.5)  # the trained-on ones would raise it
    assert _kept(cfg.output) >= set(trained)  # left out of the sample, not out of the release


def test_sample_does_not_depend_on_the_parts(tmp_path, sample_preselect_model):
    model = _model(tmp_path / "model", sample_preselect_model, [])
    small = "[{column: preselect_score, top_fraction: 0.3, sample: 40, seed: 7}]"
    measured = []
    for files in (1, 3):
        _pool(tmp_path / f"pool{files}", files)
        cfg = _config(tmp_path, f"p{files}", tmp_path / f"pool{files}", model, select=small)
        run_release(cfg, progress=False)
        measured.append(_thresholds(cfg.output)["0"])
    assert measured[0] == measured[1] and measured[0]["sampled"] == 40


def test_top_fraction_rule_errors(tmp_path, sample_preselect_model):
    _pool(tmp_path / "pool")
    for rule, message in (("{column: preselect_score, top_fraction: 0.5, min: 0.2}", r"\[0\]\.min: not with"),
                          ("{column: preselect_score, top_fraction: 0.5, values: [a]}", r"\[0\]\.values: not with"),
                          ("{column: language_score, top_fraction: 0.5}", r"\[0\]\.column: language_score is not")):
        with pytest.raises(ConfigError, match=r"stages\.select" + message):
            _config(tmp_path, "e", tmp_path / "pool", sample_preselect_model, select=f"[{rule}]")
