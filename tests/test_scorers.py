"""Scorer building blocks on real text: fastText train/predict, the n-gram LM, PreSelect's maths."""

import subprocess
import sys

import numpy as np
import pytest

from pipelines import stats
from pipelines.config import ConfigError, load_config
from pipelines.release import run_release
from scorers import fasttext_model, preselect
from scorers.ngram_lm import ByteNgramLM
from tests.conftest import SAMPLE


@pytest.fixture(scope="module")
def sample_docs(tmp_path_factory):
    """Extracted text of the embedded sample with its language, in a stable order."""
    tmp = tmp_path_factory.mktemp("scorers")
    config = tmp / "x.yaml"
    config.write_text(f"""
release: x
output: {tmp / 'out'}
runner: {{kind: local, workers: 2}}
sources: [{{name: crawl, paths: ["{SAMPLE}/*.warc.gz"], format: warc}}]
stages:
  extract: {{}}
  filter: {{language: {{languages: null, min_score: 0}}, url_blocklist: {{enabled: false}},
            gopher_repetition: {{enabled: false}}, gopher_quality: {{enabled: false}}, c4: {{enabled: false}},
            fineweb: {{enabled: false}}, pii: {{enabled: false}}}}
""")
    cfg = load_config(str(config))
    run_release(cfg, progress=False)
    return stats.connect(cfg.output).execute("SELECT id, text, language, url FROM docs_filter ORDER BY id").fetchall()


def test_predictive_strength_hand_worked():
    # three models, benchmark ascending as given: m0 (50) < m1 (60) < m2 (70)
    losses = np.array([
        [3.0, 2.0, 1.0],  # better model, lower loss: all 3 pairs agree -> S = 1
        [1.0, 2.0, 3.0],  # exactly inverted -> S = 0
        [2.0, 3.0, 1.0],  # pairs (0,1) no, (0,2) yes, (1,2) yes -> S = 2/3
        [2.0, 2.0, 1.0],  # a tie counts as disagreement: (0,1) no, (0,2) yes, (1,2) yes -> 2/3
    ])
    assert np.allclose(preselect.predictive_strength(losses, [50, 60, 70]), [1, 0, 2 / 3, 2 / 3])
    shuffled = preselect.predictive_strength(losses[:, [2, 0, 1]], [70, 50, 60])  # order comes from the scores
    assert np.allclose(shuffled, [1, 0, 2 / 3, 2 / 3])
    assert np.allclose(preselect.predictive_strength(losses, [50, 50, 70]), [1, 0, 1, 1])  # equal scores skipped


def test_seed_labels_and_threshold_by_characters():
    strength = np.array([1, 0, 0.5, 1, 1, 0.2, 1.0])
    pos, neg = preselect.seed_labels(strength)
    assert list(pos) == [0, 3, 4] and list(neg) == [1, 5, 2]
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    chars = np.array([10, 10, 30, 50])
    assert preselect.threshold_for_fraction(scores, chars, 0.1) == 0.9  # 10 of 100 characters
    # 25 %: stopping at 20 characters is closer than taking the 30-character document (50)
    assert preselect.threshold_for_fraction(scores, chars, 0.25) == 0.8
    assert preselect.threshold_for_fraction(scores, chars, 0.4) == 0.7  # 50 is closer than 20
    huge = np.array([10, 10, 2000, 50])  # a huge page at the boundary would keep 98 % for a 10 % share
    assert preselect.threshold_for_fraction(scores, huge, 0.1) == 0.8


def test_stratified_split_and_folds_hold_both_classes():
    labels = ["1"] * 10 + ["0"] * 40  # ordered by class, as seed_labels returns them
    fit, held = preselect.stratified_split(labels, 0.2, seed=0)
    assert sorted([labels[i] for i in held]) == ["0"] * 8 + ["1"] * 2 and len(fit) == 40
    assert set(fit.tolist()) | set(held.tolist()) == set(range(50))
    assert np.array_equal(held, preselect.stratified_split(labels, 0.2, seed=0)[1])  # seeded
    folds = preselect.stratified_folds(labels, 5, seed=1)
    assert sorted(i for f in folds for i in f.tolist()) == list(range(50))
    assert all(sum(labels[i] == "1" for i in f) == 2 for f in folds)
    assert preselect.balanced_accuracy(np.array([True, False, False, False]), np.array([True, True, False, False])) \
        == 0.75


def test_sample_preselect_model_is_measured_on_both_classes(sample_preselect_model):
    """The sample's topical family with benchmarks measured on the Python docs: the held-out fifth holds
    both classes (before the fix it held 0 positives), and the classifier separates them."""
    info = preselect.PreSelectScorer.load(str(sample_preselect_model)).info
    held = info["held_out"]
    assert held["positives"] > 0 and held["negatives"] > 0 and held["majority_baseline"] < 0.6
    assert held["balanced_accuracy"] >= 0.8 and info["cross_validation"]["mean"] >= 0.8
    assert len(set(info["benchmarks"])) == 4  # measured, not typed in
    assert all(round(t, preselect.SCORE_DECIMALS) == t for t in info["thresholds"].values())
    assert info["documents"]["threshold_sample"] < info["documents"]["seed"]  # not on its training documents


def test_preselect_spec_errors(tmp_path):
    from pydantic import ValidationError

    from pipelines.preselect_train import TrainSpec, train

    base = {"sample": {"name": "s", "paths": [str(SAMPLE / "*.warc.gz")], "format": "warc"},
            "output": str(tmp_path / "m.bin")}
    measured = [{"kind": "ngram", "order": 1, "benchmark": "measured"}] * 2
    with pytest.raises(ValidationError, match=r"models\[0\]\.benchmark: measured needs a `target` source"):
        TrainSpec(**base, models=measured)
    with pytest.raises(ValidationError, match="cluster K needs of N"):
        TrainSpec(**base, models=[{"kind": "ngram", "benchmark": 1, "train": {"cluster": 4, "of": 4}}] * 2)
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"id": "a", "text": ""}\n')
    spec = TrainSpec(**base, models=measured, target={"name": "t", "paths": [str(empty)], "format": "jsonl"})
    with pytest.raises(ValueError, match="target: no documents with text"):
        train(spec)
    by_source = [{"kind": "ngram", "order": 1, "benchmark": 1, "train": {"source": "e"}},
                 {"kind": "ngram", "order": 1, "benchmark": 2}]
    spec = TrainSpec(**base, models=by_source, reference_sources=[{"name": "e", "paths": [str(empty)],
                                                                   "format": "jsonl"}])
    with pytest.raises(ValueError, match=r"models\[0\]\.train: the slice \{'source': 'e'\} has no documents"):
        train(spec)


def test_ngram_lm_learns_and_round_trips(sample_docs, tmp_path):
    texts = [t for _, t, lang, _ in sample_docs if lang == "en"]
    train, held = texts[: len(texts) // 2], texts[len(texts) // 2:]
    models = {order: ByteNgramLM.train(train, order) for order in (1, 3)}  # once each, not once per text
    bpc = {order: np.mean([m.bits_per_char(t) for t in held[:40]]) for order, m in models.items()}
    assert bpc[3] < bpc[1] - 1.0  # more context predicts English markedly better
    model = models[3]
    model.save(str(tmp_path / "lm.npz"))
    assert ByteNgramLM.load(str(tmp_path / "lm.npz")).bits(held[0]) == pytest.approx(model.bits(held[0]))
    with pytest.raises(ValueError, match="not a gristmill n-gram model"):
        (tmp_path / "bad.npz").write_bytes(b"garbage")
        ByteNgramLM.load(str(tmp_path / "bad.npz"))


def test_ngram_lm_witten_bell_is_a_distribution_and_beats_dirichlet(sample_docs, tmp_path):
    texts = [t for _, t, lang, _ in sample_docs if lang == "en"]
    train, held = texts[: len(texts) // 2], texts[len(texts) // 2:]
    wb = ByteNgramLM.train(train, 5, smoothing="witten_bell")
    for model in (wb, ByteNgramLM.train(train, 3)):
        for prefix in ("", "the serv", "qzx\u00e9", held[0][:200]):  # seen, rare and unseen contexts
            p = model.next_byte_probs(prefix)
            assert p.shape == (256,) and (p > 0).all() and p.sum() == pytest.approx(1, abs=1e-9)
    # the distribution agrees with the scorer: bits of prefix + b minus bits of prefix
    assert -np.log2(wb.next_byte_probs("the serv")[ord("e")]) == pytest.approx(wb.bits("the serve")
                                                                                 - wb.bits("the serv"))
    bpc = {name: np.mean([m.bits_per_char(t) for t in held[:40]])
           for name, m in (("dirichlet3", ByteNgramLM.train(train, 3)), ("witten_bell5", wb))}
    assert bpc["witten_bell5"] < bpc["dirichlet3"] - 0.2, bpc  # the proxy's default beats the old one
    wb.save(str(tmp_path / "wb.npz"))
    loaded = ByteNgramLM.load(str(tmp_path / "wb.npz"))
    assert loaded.smoothing == "witten_bell" and loaded.bits(held[0]) == pytest.approx(wb.bits(held[0]))
    with pytest.raises(ValueError, match="smoothing"):
        ByteNgramLM.train(train[:2], 2, smoothing="kneser_ney")


def test_fasttext_base_beats_chance_on_held_out_real_text(sample_docs, tmp_path):
    """Which site a page comes from (PostgreSQL docs vs Apache httpd docs), learned from its text."""
    rows = [(t, "postgres" if "postgresql.org" in u else "httpd") for _, t, _, u in sample_docs
            if "postgresql.org" in u or "httpd.apache.org" in u]
    train, held = rows[::2], rows[1::2]
    model = fasttext_model.train_supervised([t for t, _ in train], [y for _, y in train], str(tmp_path / "m.bin"),
                                            lr=0.5, epoch=25, bucket=50_000)
    predicted, _ = model.predict_batch([t for t, _ in held])
    accuracy = np.mean([p[0] == y for p, (_, y) in zip(predicted, held)])
    majority = max(np.mean([y == "httpd" for _, y in held]), np.mean([y == "postgres" for _, y in held]))
    assert accuracy > majority + 0.2, (accuracy, majority)
    again = fasttext_model.train_supervised([t for t, _ in train], [y for _, y in train], str(tmp_path / "m2.bin"),
                                            lr=0.5, epoch=25, bucket=50_000)
    assert (again.probabilities([t for t, _ in held[:20]], "httpd")
            == model.probabilities([t for t, _ in held[:20]], "httpd")).all()  # one thread + seed: deterministic


def test_preselect_train_command(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""
sample: {{name: s, paths: ["{SAMPLE}/*.warc.gz"], format: warc}}
models:
  - {{kind: ngram, order: 3, train_share: 0.2, benchmark: 1}}
  - {{kind: ngram, order: 3, train_share: 1.0, benchmark: 2}}
fasttext: {{epoch: 5, bucket: 20000}}
fractions: [0.1, 0.5]
output: {tmp_path / 'preselect.bin'}
""")
    out = subprocess.run([sys.executable, "-m", "pipelines.cli", "preselect", "train", str(spec)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    scorer = preselect.PreSelectScorer.load(str(tmp_path / "preselect.bin"))
    assert scorer.info["documents"]["positives"] == scorer.info["documents"]["negatives"] > 10
    assert scorer.info["thresholds"]["0.1"] >= scorer.info["thresholds"]["0.5"]  # recorded for information
    trained = scorer.info["trained_ids"]  # a release leaves them out of its threshold sample
    assert len(trained) == scorer.info["documents"]["train"] and trained == sorted(trained)
    scores = scorer.score(["Some English text about the river.", "Noch ein deutscher Satz."])
    assert ((0 <= scores) & (scores <= 1)).all()
    with pytest.raises(FileNotFoundError, match="made by `gristmill preselect train`"):
        preselect.PreSelectScorer.load(str(tmp_path / "missing.bin"))


def test_score_stage_scores_and_selects(sample_preselect_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "docs.jsonl"
    import json

    data.write_text("\n".join(json.dumps({"id": f"d{i}", "text": t}) for i, t in enumerate(
        ["The river rose slowly through the night.", "Buy cheap shipping now", "Noch ein deutscher Satz.", ""])))
    config = tmp_path / "s.yaml"
    config.write_text(f"""
release: s
output: {tmp_path / 'out'}
sources: [{{name: docs, paths: ["{data}"], format: jsonl}}]
stages:
  score:
    preselect: {{model: {sample_preselect_model}}}
  select: [{{column: preselect_score, min: 0.0, max: 2.0}}, {{column: language_score, min: 0.5}}]
""")
    with pytest.raises(ConfigError, match=r"stages\.select\[1\]\.column: language_score is not produced"):
        load_config(str(config))  # no filter: nothing fills language_score

    config.write_text(config.read_text().replace("{column: language_score, min: 0.5}",
                                                 "{column: preselect_score, min: 1.5}"))
    cfg = load_config(str(config))
    run_release(cfg, progress=False)
    con = stats.connect(cfg.output)
    assert con.execute("SELECT count(*) FROM docs_select").fetchone()[0] == 0  # no score reaches 1.5
    assert con.execute("SELECT count(*) FROM docs_score").fetchone()[0] == 4  # scoring never removes
    rows = con.execute("SELECT reason FROM rejects ORDER BY id").fetchall()
    assert rows == [("select.preselect_score",)] * 4
    assert stats.funnel(cfg.output)["adds_up"]
    lower = load_config(str(config), {"stages.select": [{"column": "preselect_score", "min": 0.0}]})
    log = run_release(lower, progress=False)  # a new threshold reruns select, never the model
    assert {stage for r in log["reports"] for stage in r["stages"]} == {"select"}
    assert stats.connect(lower.output).execute("SELECT count(*) FROM docs_select").fetchone()[0] == 4

    # without that rule everything is kept; German (unseen in training) is flagged, not dropped
    config.write_text(config.read_text().replace(", {column: preselect_score, min: 1.5}", "").replace("/out", "/out2"))
    cfg = load_config(str(config))
    run_release(cfg, progress=False)
    flags = dict(stats.connect(cfg.output).execute("SELECT id, score_flag FROM docs_score").fetchall())
    assert flags["d2"] == "unseen_language.de" and flags["d0"] is None and len(flags) == 4  # "" is scored too


def test_bad_preselect_model_is_a_config_error(tmp_path, sample_preselect_model):
    from pipelines.config import ConfigError

    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a model")
    (tmp_path / "bad.bin.json").write_text("{}")
    for model, message in ((tmp_path / "missing.bin", ".*made by `gristmill preselect train`"), (bad, "")):
        config = tmp_path / "c.yaml"
        config.write_text(f"""
release: s
output: {tmp_path / 'out'}
sources: [{{name: docs, paths: ["{config}"], format: jsonl}}]
stages: {{score: {{preselect: {{model: {model}}}}}}}
""")
        with pytest.raises(ConfigError, match=r"stages\.score\.preselect\.model: " + message):
            load_config(str(config))
    config.write_text(config.read_text().replace(
        f"{{preselect: {{model: {bad}}}}}",
        f"{{preselect: {{model: {sample_preselect_model}}}}}, "
        "select: [{column: preselect_score, top_fraction: 0.42, min: 0.1}]"))
    with pytest.raises(ConfigError, match=r"select\[0\]\.min: not with top_fraction"):
        load_config(str(config))
