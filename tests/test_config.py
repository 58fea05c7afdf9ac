"""A bad config fails before any work starts, naming the file, the key and the reason."""

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.config import ConfigError, load_config
from tests.conftest import ROOT

GOOD = """
release: t
output: {out}
runner: {{kind: local, workers: 2}}
sources:
  - {{name: crawl, paths: ["{sample}/*.warc.gz"], format: warc}}
stages:
  extract: {{}}
  filter: {{}}
"""


def cfg_file(tmp_path, text):
    path = tmp_path / "release.yaml"
    path.write_text(text)
    return str(path)


def good(tmp_path):
    return GOOD.format(out=tmp_path / "out", sample=ROOT / "tests/data/sample")


def test_sample_config_validates(sample_preselect_model, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_config(str(ROOT / "configs/releases/sample.yaml"))
    assert cfg.stages.enabled() == ["extract", "filter", "decontaminate", "score", "select", "dedup", "mixture",
                                    "tokenize"]
    assert cfg.stages.filter.gopher_quality.min_doc_words == 50  # published default filled in


def test_empty_stage_blocks_take_defaults(tmp_path):
    cfg = load_config(cfg_file(tmp_path, good(tmp_path)))
    assert cfg.stages.extract.extractor == "resiliparse"
    assert cfg.stages.filter.language.languages == ("en",)


@pytest.mark.parametrize(
    "edit, key, reason",
    [
        (("filter: {}", "filter: {gopher_quality: {min_doc_wordz: 3}}"), "stages.filter.gopher_quality.min_doc_wordz",
         "Extra inputs are not permitted"),
        (("filter: {}", "filter: {gopher_quality: {min_doc_words: many}}"),
         "stages.filter.gopher_quality.min_doc_words",
         "valid integer"),
        (("workers: 2", "workers: 0"), "runner.workers", "greater than or equal to 1"),
        (("format: warc", "format: html"), "sources[0].format", "'warc'"),
        (("release: t", "relase: t"), "relase", "Extra inputs"),
    ],
)
def test_bad_keys_are_named(tmp_path, edit, key, reason):
    text = good(tmp_path).replace(*edit)
    with pytest.raises(ConfigError) as exc:
        load_config(cfg_file(tmp_path, text))
    message = str(exc.value)
    assert "release.yaml" in message and key in message and reason in message


def test_old_score_select_names_the_new_key(tmp_path):
    text = good(tmp_path) + "  score: {select: [{column: language_score, min: 0.5}]}\n"
    with pytest.raises(ConfigError, match=r"stages\.score\.select: .*moved to `stages\.select`"):
        load_config(cfg_file(tmp_path, text))


def test_missing_input_is_named(tmp_path):
    text = good(tmp_path).replace("*.warc.gz", "nothing-here-*.warc.gz")
    with pytest.raises(ConfigError, match=r"sources\[0\]\.paths\[0\]: no input file matches"):
        load_config(cfg_file(tmp_path, text))


def test_warc_needs_extract(tmp_path):
    text = good(tmp_path).replace("  extract: {}\n", "")
    with pytest.raises(ConfigError, match=r"sources\[0\]\.format: 'warc' records are HTML and need `stages.extract`"):
        load_config(cfg_file(tmp_path, text))


def test_missing_blocklist_file_is_named(tmp_path):
    text = good(tmp_path).replace("filter: {}", "filter: {url_blocklist: {domains_file: /nope/domains.txt}}")
    with pytest.raises(ConfigError, match=r"stages\.filter\.url_blocklist\.domains_file: file not found"):
        load_config(cfg_file(tmp_path, text))


def test_bad_regex_is_named(tmp_path):
    text = good(tmp_path).replace("filter: {}", "filter: {url_blocklist: {patterns: ['(unclosed']}}")
    with pytest.raises(ConfigError, match=r"stages\.filter\.url_blocklist\.patterns.*not a valid regular expression"):
        load_config(cfg_file(tmp_path, text))


def test_no_stage_is_an_error(tmp_path):
    text = good(tmp_path).replace("  extract: {}\n  filter: {}\n", "  {}\n")
    with pytest.raises(ConfigError):
        load_config(cfg_file(tmp_path, text))


def test_cli_validate_exit_codes(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "pipelines.cli", "validate", cfg_file(tmp_path, good(tmp_path))],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(good(tmp_path).replace("filter: {}", "filter: {c4: {min_num_sentences: x}}"))
    out = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "stages.filter.c4.min_num_sentences" in out.stderr
    assert not (tmp_path / "out").exists()  # failed before any work started


def test_runner_does_not_change_content_hash(tmp_path):
    a = load_config(cfg_file(tmp_path, good(tmp_path)))
    b = load_config(cfg_file(tmp_path, good(tmp_path)), {"runner.kind": "ray", "runner.workers": 7})
    assert a.content_hash() == b.content_hash()
    c = load_config(cfg_file(tmp_path, good(tmp_path).replace("filter: {}", "filter: {c4: {enabled: false}}")))
    assert c.content_hash() != a.content_hash()


@pytest.mark.parametrize(
    "runner, key, reason",
    [
        ("{kind: beam, options: {flink_mastr: 'x:8081'}}", "runner.options.flink_mastr", "not a Beam pipeline option"),
        ("{kind: beam, options: {runner: FooRunner}}", "runner.options.runner", "Unexpected pipeline runner"),
        ("{kind: beam, options: {parallelism: many}}", "runner.options.parallelism", "invalid int value"),
        ("{kind: local, options: {runner: FlinkRunner}}", "runner.options", "only for kind: beam"),
        ("{kind: beam, address: auto}", "runner.address", "only for kind: ray"),
        ("{kind: ray, runtime_env: {workdir: .}}", "runner.runtime_env", "unknown runtime_env field(s) ['workdir']"),
        ("{kind: ray, runtime_env: {env_vars: {A: 1}}}", "runner.runtime_env", "must be of type Dict[str, str]"),
        ("{kind: ray, runtime_env: {working_dir: /no/such/dir}}", "runner.runtime_env.working_dir", "not a directory"),
        ("{kind: ray, resources: {extrac: {cpus: 1}}}", "runner.resources.extrac", "Input should be"),
        ("{kind: ray, resources: {extract: {memory: lots}}}", "runner.resources.extract.memory", "not a memory size"),
    ],
)
def test_bad_runner_settings_are_named(tmp_path, runner, key, reason):
    text = good(tmp_path).replace("{kind: local, workers: 2}", runner)
    with pytest.raises(ConfigError) as exc:
        load_config(cfg_file(tmp_path, text))
    assert f"{key}: " in str(exc.value) and reason in str(exc.value)


def test_runner_settings_are_parsed(tmp_path):
    text = good(tmp_path).replace("{kind: local, workers: 2}", "{kind: beam, options: {runner: FlinkRunner, "
                                  "flink_master: 'localhost:8081', parallelism: 4}}")
    assert load_config(cfg_file(tmp_path, text)).runner.options["parallelism"] == 4
    text = good(tmp_path).replace("{kind: local, workers: 2}", "{kind: ray, resources: {mixture: {cpus: 0.5, "
                                  "gpus: 1, memory: 4GiB}, extract: {memory: 512MB}}}")
    resources = load_config(cfg_file(tmp_path, text)).runner.resources
    assert (resources["mixture"].cpus, resources["mixture"].gpus, resources["mixture"].memory) == (0.5, 1, 4 << 30)
    assert resources["extract"].memory == 512_000_000


def test_environment_variables_are_interpolated(tmp_path, monkeypatch):
    monkeypatch.setenv("GM_DATE", "20260101")
    monkeypatch.delenv("GM_UNSET", raising=False)
    text = good(tmp_path).replace("release: t", "release: web-${GM_DATE}").replace(
        f"output: {tmp_path / 'out'}", f"output: ${{GM_UNSET:-{tmp_path}}}/web-${{GM_DATE}}-$$")
    cfg = load_config(cfg_file(tmp_path, text))
    assert cfg.release == "web-20260101" and cfg.output == f"{tmp_path}/web-20260101-$"
    with pytest.raises(ConfigError, match=r"release.yaml: output: environment variable GM_UNSET is not set"):
        load_config(cfg_file(tmp_path, good(tmp_path).replace(f"output: {tmp_path / 'out'}", "output: ${GM_UNSET}")))


def test_against_globs_find_earlier_releases_only(tmp_path):
    """`against: [root/web-*]` names the finished releases it matches, never the release being built."""
    from pipelines.dedup.config import DedupConfig
    from pipelines.dedup.index import index_params

    params = {"params": index_params(DedupConfig(buckets=16))}
    for name in ("web-1", "web-2", "web-3"):
        (tmp_path / name / "dedup").mkdir(parents=True)
        (tmp_path / name / "dedup" / "_index.json").write_text(__import__("json").dumps(params))
    (tmp_path / "web-unfinished").mkdir()  # no index: not a finished release
    text = good(tmp_path).replace(f"output: {tmp_path / 'out'}", f"output: {tmp_path / 'web-3'}") + \
        f"  dedup: {{against: ['{tmp_path}/web-*']}}\n"
    cfg = load_config(cfg_file(tmp_path, text))
    assert cfg.stages.dedup.against == [str(tmp_path / "web-1"), str(tmp_path / "web-2")]
    first = text.replace(f"{tmp_path}/web-*", f"{tmp_path}/none-yet-*")
    assert load_config(cfg_file(tmp_path, first)).stages.dedup.against == []  # the first release of a series


def test_text_source_needs_a_stage_that_applies(tmp_path):
    data = tmp_path / "docs.jsonl"
    data.write_text('{"text": "hello"}\n')
    text = good(tmp_path).replace(f"{ROOT / 'tests/data/sample'}/*.warc.gz", str(data)).replace(
        "format: warc", "format: jsonl").replace("  filter: {}\n", "")
    with pytest.raises(ConfigError, match=r"sources\[0\]\.format: 'jsonl' is already text"):
        load_config(cfg_file(tmp_path, text))


BOMB = "release: t\nlol: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"l{i}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))


@pytest.mark.parametrize("text, reason", [
    (BOMB, "YAML expands to more than 100000 values"),  # "billion laughs": 9^9 strings from 700 bytes
    ("a: " + "[" * 100_000 + "]" * 100_000 + "\n", "YAML nested too deeply"),
    ("a: &x [1, *x]\n", "a YAML alias refers to the value that contains it"),
])
def test_hostile_yaml_is_a_config_error(tmp_path, text, reason):
    assert len(BOMB) < 800
    path = cfg_file(tmp_path, text)
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "validate", path], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and f"config error: {path}: {reason}" in result.stderr, result.stderr
    import time

    began = time.perf_counter()
    with pytest.raises(ConfigError):
        load_config(path)
    assert text != BOMB or time.perf_counter() - began < 0.5  # bounded before anything is expanded


def test_empty_variable_takes_the_default_only_with_colon(tmp_path, monkeypatch):
    monkeypatch.setenv("GM_EMPTY", "")
    out = tmp_path / "out"
    with_colon = good(tmp_path).replace(f"output: {out}", f"output: ${{GM_EMPTY:-{out}}}")
    assert load_config(cfg_file(tmp_path, with_colon)).output == str(out)
    without = good(tmp_path).replace(f"output: {out}", f"output: ${{GM_EMPTY-{out}}}")
    with pytest.raises(ConfigError, match="output: empty"):  # `-` keeps the empty value, as in POSIX shells
        load_config(cfg_file(tmp_path, without))


def test_bad_outputs_are_named(tmp_path, monkeypatch):
    sample = ROOT / "tests/data/sample"
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    for output, reason in [('""', "output: empty"), ("/", "the root of a filesystem"),
                           (str(tmp_path / "a-file"), "is an existing file"),
                           (".", "holds files that are not a gristmill release"),
                           (str(tmp_path / "busy"), "holds files that are not a gristmill release"),
                           (str(sample / "out"), None)]:
        text = good(tmp_path).replace(f"output: {tmp_path / 'out'}", f"output: {output}")
        if reason is None:
            load_config(cfg_file(tmp_path, text))  # beside the inputs, not matched by their glob: fine
            continue
        with pytest.raises(ConfigError, match=reason):
            load_config(cfg_file(tmp_path, text))


def test_output_overlapping_an_input_glob_is_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.parquet").write_bytes(b"")
    text = good(tmp_path).replace(f"{ROOT / 'tests/data/sample'}/*.warc.gz", f"{data}/**/*.parquet").replace(
        "format: warc", "format: parquet").replace("  extract: {}\n", "").replace(
        f"output: {tmp_path / 'out'}", f"output: {data / 'out'}")
    with pytest.raises(ConfigError, match=r"is matched by the input glob .*a rerun would read its own outputs"):
        load_config(cfg_file(tmp_path, text))
    inside = text.replace(f"{data}/**/*.parquet", str(data / "a.parquet")).replace(f"output: {data / 'out'}",
                                                                                     f"output: {data}")
    with pytest.raises(ConfigError, match=r"contains an input"):
        load_config(cfg_file(tmp_path, inside))


def test_input_paths_with_glob_characters(tmp_path):
    (tmp_path / "br[1].jsonl").write_text('{"text": "hello"}\n')
    (tmp_path / "b1.jsonl").write_text('{"text": "other"}\n')
    base = good(tmp_path).replace("format: warc", "format: jsonl").replace("  extract: {}\n", "")
    for pattern, found in [(tmp_path / "br[1].jsonl", ["br[1].jsonl"]),  # exists: taken literally
                           (tmp_path / "br[[]1].jsonl", ["br[1].jsonl"]),  # escaped in a glob
                           (tmp_path / "b[0-9].jsonl", ["b1.jsonl"])]:  # a glob
        cfg = load_config(cfg_file(tmp_path, base.replace(f"{ROOT / 'tests/data/sample'}/*.warc.gz", str(pattern))))
        from pipelines.release import plan

        assert [Path(s.input_file).name for s in plan(cfg)] == found


def test_unreadable_input_is_named(tmp_path):
    (tmp_path / "loop.jsonl").symlink_to(tmp_path / "loop.jsonl")
    (tmp_path / "ok.jsonl").write_text('{"text": "hello"}\n')
    text = good(tmp_path).replace(f"{ROOT / 'tests/data/sample'}/*.warc.gz", f"{tmp_path}/*.jsonl").replace(
        "format: warc", "format: jsonl").replace("  extract: {}\n", "")
    with pytest.raises(ConfigError, match=r"sources\[0\]\.paths\[0\]: .*loop\.jsonl: not readable"):
        load_config(cfg_file(tmp_path, text))


def test_credentials_in_the_config_are_refused_without_echo(tmp_path):
    secret = "wJalrXUtnFEMI-K7MDENG-EXAMPLEKEY"
    for source in [f"{{name: s3, paths: ['s3://bucket/x.jsonl'], format: jsonl, storage_options: "
                   f"{{key: AKIAEXAMPLE, client_kwargs: {{aws_secret_access_key: {secret}}}}}}}",
                   f"{{name: s3, paths: ['s3://AKIAEXAMPLE:{secret}@bucket/x.jsonl'], format: jsonl}}"]:
        text = good(tmp_path).replace(
            f'{{name: crawl, paths: ["{ROOT / "tests/data/sample"}/*.warc.gz"], format: warc}}', source)
        with pytest.raises(ConfigError, match=r"sources\[0\]\.(storage_options|paths): .*credentials") as exc:
            load_config(cfg_file(tmp_path, text))
        assert secret not in str(exc.value) and "AKIAEXAMPLE" not in str(exc.value)
    anonymous = good(tmp_path).replace("format: warc}", "format: warc, storage_options: {anon: true, token: anon}}")
    load_config(cfg_file(tmp_path, anonymous))
