"""Proxy objectives for the CLIMB search: score a candidate mixture, lower is better.

A candidate's training sample takes `weights[c] x train_chars` characters from each cluster's pool
(documents in a seeded order, cycled if the cluster is small), so the same weights give the same sample.
"""

import json
import os
import subprocess
import sys
import tempfile

import fsspec
import numpy as np

from pipelines import io
from pipelines.mixture.config import ProxyConfig
from scorers.ngram_lm import ByteNgramLM


def draw(pools: list[list[str]], weights: np.ndarray, chars: int) -> list[str]:
    texts = []
    for pool, w in zip(pools, weights):
        want, i = w * chars, 0
        while pool and want > 0:
            text = pool[i % len(pool)]
            texts.append(text[: int(want) + 1])
            want -= len(text)
            i += 1
    return texts


def bits_per_byte(lm: ByteNgramLM, texts: list[str]) -> float:
    total = sum(len(t.encode()) for t in texts)
    return sum(lm.bits(t) for t in texts) / max(total, 1)


class NgramProxy:
    """Built in, CPU only: a byte n-gram LM trained on the drawn sample, bits per byte on the validation set."""

    def __init__(self, cfg: ProxyConfig, pools: list[list[str]], validation: list[str]):
        self.cfg, self.pools, self.validation = cfg, pools, validation

    def __call__(self, weights: np.ndarray, run: int) -> tuple[float | None, str]:
        lm = ByteNgramLM.train(draw(self.pools, weights, self.cfg.train_chars), self.cfg.order,
                               smoothing=self.cfg.smoothing)
        return round(bits_per_byte(lm, self.validation), 6), "ok"


class CommandProxy:
    """An external trainer (a real proxy LM on GPUs, a Ray job...). Contract, per run in DIR:
    gristmill writes mixture.json {run, weights: {stratum: w}, validation: [paths], train_chars} and
    train.jsonl ({"text"} per line, the drawn sample); runs `command` with GRISTMILL_PROXY_DIR=DIR;
    reads result.json {"objective": number} (lower is better)."""

    def __init__(self, cfg: ProxyConfig, pools: list[list[str]], keys: list[str], workdir: str):
        self.cfg, self.pools, self.keys, self.workdir = cfg, pools, keys, workdir

    def __call__(self, weights: np.ndarray, run: int) -> tuple[float | None, str]:
        folder = os.path.join(self.workdir, f"run-{run:04d}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "mixture.json"), "w") as fh:
            json.dump({"run": run, "weights": dict(zip(self.keys, map(float, weights))),
                       "validation": self.cfg.validation.paths, "train_chars": self.cfg.train_chars}, fh, indent=2)
        with open(os.path.join(folder, "train.jsonl"), "w") as fh:
            for text in draw(self.pools, weights, self.cfg.train_chars):
                fh.write(json.dumps({"text": text}) + "\n")
        env = {**os.environ, "GRISTMILL_PROXY_DIR": folder, "GRISTMILL_PYTHON": sys.executable}
        try:
            done = subprocess.run(self.cfg.command, env=env, capture_output=True, text=True,
                                  timeout=self.cfg.timeout_seconds)
        except subprocess.TimeoutExpired:
            return None, f"timeout after {self.cfg.timeout_seconds:g}s"
        except OSError as exc:
            return None, f"could not start: {exc}"
        if done.returncode != 0:
            return None, f"exit {done.returncode}: {done.stderr.strip()[-200:]}"
        try:
            with open(os.path.join(folder, "result.json")) as fh:
                return float(json.load(fh)["objective"]), "ok"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return None, f"bad result.json: {type(exc).__name__}: {exc}"


def command_workdir(folder: str, prefix: str) -> str:
    """Where the command proxy's runs go: `folder` when it is on this machine's disk, else a temporary
    folder here (the command runs on this machine)."""
    fs, local = fsspec.core.url_to_fs(folder)
    return local if io.is_local(fs) else tempfile.mkdtemp(prefix=prefix)

