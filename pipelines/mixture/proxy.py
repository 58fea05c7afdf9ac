"""Proxy objectives for the CLIMB search: score a candidate mixture, lower is better.

A candidate's training sample takes `weights[c] x train_chars` characters from each cluster's pool
(documents in a seeded order, cycled if the cluster is small), so the same weights give the same sample.
"""

import contextlib
import json
import os
import signal
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
        returncode, stderr = run_command(self.cfg.command, env, self.cfg.timeout_seconds)
        if returncode is None:
            return None, stderr
        if returncode != 0:
            return None, f"exit {returncode}: {stderr.strip()[-200:]}"
        try:
            with open(os.path.join(folder, "result.json")) as fh:
                return float(json.load(fh)["objective"]), "ok"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return None, f"bad result.json: {type(exc).__name__}: {exc}"


def run_command(command: list[str], env: dict, timeout: float) -> tuple[int | None, str]:
    """(exit code, stderr), or (None, why) when it could not start or ran past `timeout`. The command
    runs in a session of its own and the whole group is killed on timeout, so a trainer that starts
    children (a shell script, a launcher) cannot outlive its limit or hold its pipes open."""
    try:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    except OSError as exc:
        return None, f"could not start: {exc}"
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):  # the group may have ended meanwhile
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, f"timeout after {timeout:g}s"
    return proc.returncode, stderr


def command_workdir(folder: str, prefix: str) -> str:
    """Where the command proxy's runs go: `folder` when it is on this machine's disk, else a temporary
    folder here (the command runs on this machine)."""
    fs, local = fsspec.core.url_to_fs(folder)
    return local if io.is_local(fs) else tempfile.mkdtemp(prefix=prefix)

