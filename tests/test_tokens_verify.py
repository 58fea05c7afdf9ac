"""`gristmill tokens verify`: an intact output passes; each corruption is named with its file and reason."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tokenize_stage.verify import verify


@pytest.fixture
def copy(sample_tokens, tmp_path):
    """A copy of the tokenize output (all verify reads) and its manifest."""
    shutil.copytree(sample_tokens[1] / "tokenize", tmp_path / "out" / "tokenize")
    out = tmp_path / "out"
    return out, json.loads((out / "tokenize" / "manifest.json").read_text())


def cli(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", "tokens", "verify", str(out)],
                          capture_output=True, text=True, cwd=Path(__file__).parents[1])


def test_intact_output_passes(copy):
    out, manifest = copy
    assert verify(str(out / "tokenize")) == []
    assert len(manifest["shards"]) > 2 and all(s["eod"] >= s["padding"] for s in manifest["shards"])
    result = cli(out)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and f"{manifest['totals']['samples']} samples" in result.stdout
    assert "megatron (" in result.stdout and "parquet (" in result.stdout and "mds (" in result.stdout


def flip_token_byte(out, manifest):
    """The low byte of the first token that is not padding: still a valid id, only the sha256 tells."""
    path = out / "tokenize" / "megatron" / f"{manifest['shards'][0]['shard']}.bin"
    tokens = np.fromfile(path, dtype=manifest["dtype"])
    i = int(np.flatnonzero(tokens != manifest["pad_id"])[0])
    data = bytearray(path.read_bytes())
    data[i * tokens.itemsize] ^= 1
    path.write_bytes(bytes(data))
    return path, "sha256"


def truncate_idx(out, manifest):
    path = out / "tokenize" / "megatron" / f"{manifest['shards'][1]['shard']}.idx"
    path.write_bytes(path.read_bytes()[:-40])
    return path, "bytes, expected"


def empty_parquet(out, manifest):
    path = out / "tokenize" / "parquet" / f"{manifest['shards'][-1]['shard']}.parquet"
    path.write_bytes(b"")
    return path, "empty"


def narrow_dtype(out, manifest):
    path = out / "tokenize" / "manifest.json"
    path.write_text(json.dumps({**manifest, "dtype": "uint16"}))
    return path, "cannot hold the vocabulary"


def delete_shard_file(out, manifest):
    path = out / "tokenize" / "megatron" / f"{manifest['shards'][-1]['shard']}.bin"
    path.unlink()
    return path, "missing"


@pytest.mark.parametrize("corrupt", [flip_token_byte, truncate_idx, empty_parquet, narrow_dtype, delete_shard_file])
def test_corruption_is_named(copy, corrupt):
    out, manifest = copy
    path, reason = corrupt(out, manifest)
    problems = verify(str(out / "tokenize"))
    assert problems and problems[0].startswith(f"{path}: ") and reason in problems[0], problems
    result = cli(out)
    assert result.returncode == 1
    assert result.stderr.startswith(f"{path}: ") and reason in result.stderr.splitlines()[0], result.stderr


def test_a_release_without_samples_fails(tmp_path):
    from pipelines.config import load_config
    from pipelines.release import run_release

    (tmp_path / "d.jsonl").write_text('{"id": "a", "text": ""}\n{"id": "b", "text": "  "}\n')
    (tmp_path / "t.yaml").write_text(f"""
release: e
output: {tmp_path / 'out'}
runner: {{kind: local, workers: 1}}
sources: [{{name: d, paths: ["{tmp_path / 'd.jsonl'}"], format: jsonl}}]
stages: {{tokenize: {{formats: [megatron, mds, parquet]}}}}
""")
    run_release(load_config(str(tmp_path / "t.yaml")), progress=False)
    assert not list((tmp_path / "out/tokenize").glob("megatron/*"))  # no empty shard files
    assert verify(str(tmp_path / "out/tokenize")) == [f"{tmp_path / 'out/tokenize/manifest.json'}: no samples: "
                                                      "every document was rejected, or none came in"]
