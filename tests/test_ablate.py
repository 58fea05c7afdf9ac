"""`gristmill ablate`: a release's selection against random selections of the same size, on a target."""

import json
import random
import time

import pytest

from pipelines import ablate
from pipelines.cli import main
from pipelines.config import load_config
from pipelines.release import run_release
from tests.conftest import ROOT

PYTHON_DOCS = ROOT / "tests/data/validation/python-docs.jsonl"
OFF = "{enabled: false}"


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """good: Python docs (like the target); bad: letter-and-digit noise, which language id scores low and
    `select` drops."""
    tmp = tmp_path_factory.mktemp("ablate")
    docs = [json.loads(line) for line in PYTHON_DOCS.read_text().splitlines()]
    _jsonl(tmp / "target.jsonl", docs[:5])
    _jsonl(tmp / "good.jsonl", [{"id": f"g{i}", "text": d["text"]} for i, d in enumerate(docs[5:])])
    rng = random.Random(0)
    noise = [" ".join("".join(rng.choice("qxzjkvwy0123456789") for _ in range(rng.randint(2, 7)))
                      for _ in range(200)) for _ in range(150)]
    _jsonl(tmp / "bad.jsonl", [{"id": f"b{i}", "text": t} for i, t in enumerate(noise)])
    (tmp / "empty.jsonl").write_text("")
    config = tmp / "a.yaml"
    config.write_text(f"""
release: a
output: {tmp / 'out'}
runner: {{kind: local, workers: 1}}
sources:
  - {{name: good, paths: ["{tmp / 'good.jsonl'}"], format: jsonl}}
  - {{name: bad, paths: ["{tmp / 'bad.jsonl'}"], format: jsonl}}
stages:
  filter:
    language: {{languages: null, min_score: 0}}
    url_blocklist: {OFF}
    gopher_repetition: {OFF}
    gopher_quality: {OFF}
    c4: {OFF}
    fineweb: {OFF}
    pii: {OFF}
  select: [{{column: language_score, min: 0.5}}]
""")
    cfg = load_config(str(config))
    run_release(cfg, progress=False)
    return tmp, cfg.output


def test_selection_beats_random_and_the_report_shows_it(release, capsys):
    tmp, out = release
    assert ablate.stages_used(out) == ("select", "filter")
    assert main(["ablate", out, "--seeds", "3", "--target", str(tmp / "target.jsonl")]) == 0
    printed = capsys.readouterr().out
    assert "selection" in printed and "random mean" in printed
    result = json.loads((tmp / "out/ablation.json").read_text())
    assert result["seeds"] == [0, 1, 2] and result["metric"] == "bits_per_byte"
    assert result["selection_stage"] == "select" and result["pool_stage"] == "filter"
    assert result["chars"] == result["selection_chars"] < result["pool_chars"]
    randoms = [r["value"] for r in result["random"]]
    assert len(randoms) == 3 and len(set(randoms)) > 1  # the seeds draw different samples
    assert all(result["selection"]["value"] < v for v in randoms)
    assert result["difference_to_best"] < 0 and result["difference_to_mean"] < result["difference_to_best"]
    assert main(["report", out]) == 0
    page = (tmp / "out/report.html").read_text()
    assert "<h2>Ablation</h2>" in page and page.count("data:image/png") >= 1
    assert f"{result['selection']['value']}" in page


def test_a_target_without_documents_exits_2_naming_it(release, capsys):
    tmp, out = release
    empty = str(tmp / "empty.jsonl")
    assert main(["ablate", out, "--seeds", "1", "--target", empty]) == 2
    assert empty in capsys.readouterr().err
    missing = str(tmp / "nothing-*.jsonl")
    assert main(["ablate", out, "--seeds", "1", "--target", missing]) == 2
    assert missing in capsys.readouterr().err


def test_without_a_target_or_a_command_exits_2(release, capsys):
    _, out = release
    assert main(["ablate", out]) == 2  # no CLIMB validation source in this release
    assert "--target" in capsys.readouterr().err
    assert main(["ablate", out, "--proxy", "command", "--target", str(PYTHON_DOCS)]) == 2
    assert "proxy.command" in capsys.readouterr().err


def test_a_failing_or_hanging_command_proxy_is_recorded_and_the_rest_goes_on(release, capsys):
    """Run 0 is the selection, run k+1 random seed k: seed 0's trainer crashes, seed 1's hangs with a child
    holding its pipe (the whole group is killed at the timeout), the others report an objective."""
    tmp, out = release
    trainer = tmp / "trainer.sh"
    trainer.write_text("""#!/bin/sh
run=$(sed -n 's/.*"run": \\([0-9]*\\).*/\\1/p' "$GRISTMILL_PROXY_DIR/mixture.json")
[ "$run" = 1 ] && { echo "out of memory" >&2; exit 3; }
[ "$run" = 2 ] && { sleep 60 & sleep 60; }
echo "{\\"objective\\": $(wc -c < "$GRISTMILL_PROXY_DIR/train.jsonl")}" > "$GRISTMILL_PROXY_DIR/result.json"
""")
    trainer.chmod(0o755)
    began = time.monotonic()
    code = main(["ablate", out, "--seeds", "3", "--target", str(tmp / "target.jsonl"), "--command", str(trainer),
                 "--timeout", "3"])
    assert time.monotonic() - began < 30  # the hanging run and its child were killed at 3 s
    assert code == 0  # the selection and one random draw have numbers
    result = json.loads((tmp / "out/ablation.json").read_text())
    assert result["metric"] == "objective" and result["proxy"]["kind"] == "command"
    statuses = [r["status"] for r in result["random"]]
    assert statuses[0] == "exit 3: out of memory" and statuses[1] == "timeout after 3s" and statuses[2] == "ok"
    assert result["random_summary"]["mean"] == result["random"][2]["value"] > 0
    printed = capsys.readouterr().out
    assert "random seed 0: exit 3: out of memory" in printed and "random seed 1: timeout after 3s" in printed
    written = json.loads((tmp / "out/ablation/run-0001/mixture.json").read_text())
    assert written["train_chars"] == result["chars"]


def test_a_command_that_cannot_start_fails_every_run(release, capsys):
    tmp, out = release
    code = main(["ablate", out, "--seeds", "1", "--target", str(tmp / "target.jsonl"),
                 "--command", str(tmp / "no-such-trainer")])
    assert code == 1
    assert "could not start" in capsys.readouterr().out


def test_pool_read_from_the_sources_when_the_selection_is_the_first_stage(release):
    """A dedup-only release: the pool is the sources as read (streamed again for each draw)."""
    tmp, _ = release
    config = tmp / "d.yaml"
    config.write_text(f"""
release: d
output: {tmp / 'dedup-only'}
runner: {{kind: local, workers: 1}}
sources:
  - {{name: good, paths: ["{tmp / 'good.jsonl'}", "{tmp / 'copy.jsonl'}"], format: jsonl}}
stages:
  dedup: {{minhash: {{enabled: false}}}}
""")
    good = (tmp / "good.jsonl").read_text().splitlines()
    (tmp / "copy.jsonl").write_text("".join(line.replace('"id": "g', '"id": "c') + "\n" for line in good))
    cfg = load_config(str(config))
    run_release(cfg, progress=False)
    result = ablate.ablate(cfg.output, seeds=2, target=str(tmp / "target.jsonl"))
    assert result["pool_stage"] == "sources" and result["selection_stage"] == "dedup"
    assert result["pool_documents"] == 2 * len(good) and result["pool_chars"] == 2 * result["selection_chars"]
    assert all(r["value"] is not None for r in result["random"])
