"""The same release on every engine gives the same bytes, and survives crashes.

Parity: the sample release (every stage, CLIMB included) on local, Ray and Beam.
Faults, on a 4-shard input against an uninterrupted reference: a worker killed mid-task (local,
Ray), the driver killed with SIGKILL and the run repeated (local, Ray), and a shard that fails
every attempt (all three engines): the run names it, keeps the rest, and a rerun completes it.
"""

import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from pipelines.config import load_config
from pipelines.release import ShardFailures, run_release
from tests.conftest import ROOT, SAMPLE
from tests.test_release import make_config, tree


def gristmill(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", *args, "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)


def wait_for(condition, seconds: float = 120, step: float = 0.005):
    deadline = time.time() + seconds
    while time.time() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(step)
    raise AssertionError("timed out waiting")


def test_sample_release_is_identical_on_every_engine(ray_cluster, sample_preselect_model, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the sample config's paths are relative to the repository
    trees = {}
    for kind in ("local", "ray", "beam"):
        cfg = load_config("configs/releases/sample.yaml", {"runner.kind": kind, "output": str(tmp_path / kind)})
        log = run_release(cfg, progress=False)
        assert log["failures"] == []
        trees[kind] = tree(tmp_path / kind)
    assert "tokenize/manifest.json" in trees["local"] and "mixture/mixture.json" in trees["local"]
    assert trees["ray"] == trees["local"]
    assert trees["beam"] == trees["local"]


@pytest.fixture(scope="module")
def four_shards(tmp_path_factory):
    """Four input shards and the release built from them in one uninterrupted, single-worker run."""
    root = tmp_path_factory.mktemp("faults")
    inputs = root / "inputs"
    inputs.mkdir()
    for i, src in enumerate(sorted(SAMPLE.glob("*.warc.gz")) * 2):
        shutil.copy(src, inputs / f"IN-{i}.warc.gz")
    run_release(load_config(make_config(root, out="reference", inputs=inputs), {"runner.workers": 1}), progress=False)
    return inputs, tree(root / "reference")


def config(tmp_path: Path, inputs: Path, name: str) -> tuple[str, Path]:
    return make_config(tmp_path, out=name, inputs=inputs), tmp_path / name


def test_local_worker_killed_mid_task_is_retried(four_shards, tmp_path):
    inputs, reference = four_shards
    cfg, out = config(tmp_path, inputs, "killed-worker")
    driver = gristmill(cfg, "--workers", "2")

    def busy_worker():  # a spawned pool process while some shard's output is half-written
        if not list(out.rglob(".tmp-*")):
            return None
        kids = [p for p in psutil.Process(driver.pid).children() if "spawn_main" in " ".join(p.cmdline())]
        return kids[0] if kids else None

    victim = wait_for(busy_worker)
    victim.send_signal(signal.SIGKILL)
    assert driver.wait(timeout=300) == 0, driver.stderr.read()
    assert not victim.is_running()
    assert tree(out) == reference


def test_local_driver_killed_then_rerun_gives_identical_bytes(four_shards, tmp_path):
    inputs, reference = four_shards
    cfg, out = config(tmp_path, inputs, "killed-driver")
    driver = gristmill(cfg, "--workers", "1")
    wait_for(lambda: list(out.glob("filter/_SUCCESS.*")))
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert not (out / "manifest.json").exists(), "the run finished before it could be killed"
    assert 1 <= len(list(out.glob("filter/_SUCCESS.*"))) < 4
    (out / "filter" / ".tmp-0000-part-00003.parquet").write_bytes(b"half-written")  # as a kill mid-write leaves
    rerun = gristmill(cfg, "--workers", "2")  # a different worker count
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read()
    assert tree(out) == reference


def test_local_driver_killed_leaves_no_process_behind(four_shards, tmp_path):
    inputs, _ = four_shards
    cfg, out = config(tmp_path, inputs, "orphans")
    driver = gristmill(cfg, "--workers", "2")
    wait_for(lambda: list(out.rglob(".tmp-*")))
    children = psutil.Process(driver.pid).children(recursive=True)  # pool workers, resource tracker
    assert children
    driver.send_signal(signal.SIGKILL)
    driver.wait()

    def ended(p: psutil.Process) -> bool:
        try:
            return p.status() == psutil.STATUS_ZOMBIE  # exited, not yet reaped by the new parent
        except psutil.NoSuchProcess:
            return True

    wait_for(lambda: all(map(ended, children)), seconds=20, step=0.2)


def test_ray_worker_killed_mid_task_is_retried(ray_cluster, four_shards, tmp_path):
    inputs, reference = four_shards
    cfg, out = config(tmp_path, inputs, "ray-killed-worker")
    killed, stop = [], threading.Event()

    def kill_first_shard_task():  # Ray titles a worker process by the task it is running
        while not stop.is_set() and not killed:
            for proc in psutil.process_iter(["cmdline"]):
                if (proc.info["cmdline"] or [""])[0].startswith("ray::documents"):
                    proc.send_signal(signal.SIGKILL)
                    killed.append(proc.pid)
                    return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_first_shard_task)
    killer.start()
    try:
        log = run_release(load_config(cfg, {"runner.kind": "ray"}), progress=False)
    finally:
        stop.set()
        killer.join()
    assert killed, "no shard-task was caught running"
    assert log["failures"] == [] and tree(out) == reference


def test_ray_driver_killed_then_rerun_gives_identical_bytes(ray_cluster, four_shards, tmp_path):
    inputs, reference = four_shards
    cfg, out = config(tmp_path, inputs, "ray-killed-driver")
    address = ray_cluster.get_runtime_context().gcs_address  # an existing cluster, as `--address auto` finds
    driver = gristmill(cfg, "--runner", "ray", "--address", address)
    wait_for(lambda: list(out.glob("filter/_SUCCESS.*")))
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert not (out / "manifest.json").exists(), "the run finished before it could be killed"
    rerun = gristmill(cfg, "--runner", "ray", "--address", address)
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read()
    assert tree(out) == reference


@pytest.mark.parametrize("kind", ["local", "ray", "beam"])
def test_a_shard_failing_every_attempt_is_named_and_the_rest_kept(kind, four_shards, tmp_path, request):
    """A directory where part-00001's filter marker belongs makes that shard's task raise on every
    attempt (its completion cannot be read); the other shards complete; a rerun after the fix completes."""
    if kind == "ray":
        request.getfixturevalue("ray_cluster")
    inputs, reference = four_shards
    cfg_path, out = config(tmp_path, inputs, f"{kind}-failing")
    cfg = load_config(cfg_path, {"runner.kind": kind, "runner.max_retries": 1})
    blocker = out / "filter" / "_SUCCESS.part-00001"
    blocker.mkdir(parents=True)
    with pytest.raises(ShardFailures) as failed:
        run_release(cfg, progress=False)
    message = str(failed.value)
    assert message.startswith("1 of 4 shards failed") and "part-00001" in message and "IN-1.warc.gz" in message
    assert "Is a directory" in message
    done = sorted(p.name for p in out.glob("filter/_SUCCESS.*") if p.is_file())
    assert done == ["_SUCCESS.part-00000", "_SUCCESS.part-00002", "_SUCCESS.part-00003"]
    blocker.rmdir()
    log = run_release(cfg, progress=False)
    assert log["failures"] == [] and tree(out) == reference
    assert sorted(r["part"] for r in log["reports"] if r["phase"].endswith("documents") and not r["skipped"]) \
        == ["part-00001"]
