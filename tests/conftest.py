import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "sample"


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for the whole session (starting one takes ~10 s)."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def sample_copy(tmp_path):
    """The shipped sample WARCs copied to a temp folder (tests may damage or add files)."""
    dst = tmp_path / "input"
    shutil.copytree(SAMPLE, dst)
    return dst


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def sample_preselect_model():
    """The PreSelect model the sample release names, built as `make run` builds it when it is missing."""
    from pipelines.preselect_train import load_spec, train

    spec = load_spec(str(ROOT / "configs/preselect/sample.yaml"))
    if not (ROOT / spec.output).exists() or not (ROOT / f"{spec.output}.json").exists():
        import os

        cwd = os.getcwd()
        os.chdir(ROOT)  # the spec's paths are relative to the repository
        try:
            train(spec)
        finally:
            os.chdir(cwd)
    return ROOT / spec.output


TOKENIZED = """
release: t
output: {out}
runner: {{kind: local, workers: 2}}
sources:
  - {{name: crawl, paths: ["{sample}/*.warc.gz"], format: warc}}
stages:
  extract: {{}}
  filter: {{url_blocklist: {{domains: [sources.debian.org]}}, c4: {{filter_no_terminal_punct: false}}}}
  tokenize: {{seq_len: 512, window: 40, shard_tokens: 20000, compress: true, formats: [megatron, mds, parquet]}}
"""


@pytest.fixture(scope="session")
def sample_tokens(tmp_path_factory):
    """The sample release through extract, filter and tokenize in every format (tests must not change it)."""
    from pipelines.config import load_config
    from pipelines.release import run_release

    tmp = tmp_path_factory.mktemp("tok")
    cfg = load_config(str(write_config(tmp / "t.yaml", TOKENIZED.format(out=tmp / "out", sample=SAMPLE))))
    run_release(cfg, progress=False)
    return cfg, Path(cfg.output)
