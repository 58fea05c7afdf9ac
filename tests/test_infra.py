"""infra/: every file is checked by the tool that reads it, where that tool runs here (otherwise skipped,
with the reason), and the gristmill commands and release configs inside them by gristmill itself.

Ray launcher config: Ray's own schema check; Kubernetes manifests: kubernetes-validate (offline schemas,
strict), kubectl's offline reader; the RayJob (a custom resource, no schema offline): its pod templates
against Kubernetes' PodTemplateSpec, its entrypoint with gristmill's CLI parser, its release config with
gristmill's loader; systemd units: systemd-analyze; the scheduled script: run for real, twice; Beam on
Flink: gristmill validate and Beam's own options parser; compose file: the Compose spec schema.
"""

import copy
import datetime as dt
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
SAMPLE = ROOT / "tests" / "data" / "sample"
WEEKLY = ROOT / "configs" / "releases" / "weekly-web.yaml"
K8S_VERSION = "1.32"  # the Kubernetes API version the manifests are checked against (kubectl here is 1.32)
ENTRYPOINT = "gristmill run /etc/gristmill/release.yaml --runner ray --address auto"


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def doc_of_kind(path: Path, kind: str) -> dict:
    (found,) = [d for d in docs(path) if d["kind"] == kind]
    return found


def parse_cli(argv: list[str]):
    """gristmill's own parser; `--version` exits 0, a bad command line exits 2."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:
        assert exc.code == 0, f"gristmill's CLI rejects: gristmill {shlex.join(argv)}"
        return None


_SUBCOMMANDS = "run|validate|stats|report|diff|tokens|preselect|dataman|--version"
_GRISTMILL_CMD = re.compile(rf"\bgristmill\s+((?:{_SUBCOMMANDS})\b[^'\"\n#]*)")


def gristmill_commands(text: str) -> list[list[str]]:
    """Every `gristmill ...` command line written in a file (commands and the usage lines in comments)."""
    return [shlex.split(m.group(1)) for m in _GRISTMILL_CMD.finditer(text)]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=kw.pop("timeout", 60), **kw)


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"`{tool}` is not installed on this machine")
    return path


# ---------------------------------------------------------------- Ray cluster launcher (infra/ray)

def test_ray_cluster_config_passes_rays_schema():
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = yaml.safe_load((INFRA / "ray" / "cluster.yaml").read_text())
    # as `ray up` does: fill Ray's AWS defaults in, then ray-schema.json and the cross-field checks
    validate_config(prepare_config(copy.deepcopy(cfg)))
    bad = copy.deepcopy(cfg)
    bad["available_node_types"]["ray.worker.gpu"]["min_worker"] = 0  # the check is real: a typo fails
    with pytest.raises(Exception, match="min_worker"):
        validate_config(prepare_config(bad))

    assert cfg["provider"]["type"] == "aws"
    types = cfg["available_node_types"]
    workers = {name: t for name, t in types.items() if name != cfg["head_node_type"]}
    assert {t["node_config"]["InstanceType"][0] for t in workers.values()} >= {"m", "g"}  # CPU and GPU types
    assert all(t["min_workers"] == 0 for t in workers.values())
    for remote, local in cfg["file_mounts"].items():
        assert (ROOT / local).exists(), f"file_mounts[{remote}]: {local} is not in the repository"
    assert any("gristmill[ray]" in c for c in cfg["setup_commands"])


def test_ray_cluster_gristmill_commands_parse():
    text = (INFRA / "ray" / "cluster.yaml").read_text()
    commands = gristmill_commands(text)
    assert len(commands) >= 3, commands
    for argv in commands:
        parse_cli(argv)
    (run_cmd,) = [c for c in commands if c[0] == "run"]
    args = parse_cli(run_cmd)
    assert (args.runner, args.address) == ("ray", "auto")
    # the config it names is the one file_mounts copies to the cluster (~/gristmill/configs <- ./configs)
    assert (ROOT / args.config).is_file()


# ---------------------------------------------------------------- Kubernetes manifests

KUBE_FILES = [INFRA / "kubernetes" / "cronjob.yaml", INFRA / "kuberay" / "release-configmap.yaml",
              INFRA / "kuberay" / "rayjob.yaml"]


def test_kubernetes_builtin_kinds_validate_strictly():
    kv = pytest.importorskip("kubernetes_validate", reason="pip install -e '.[dev]' (kubernetes-validate)")

    kinds = []
    for path in KUBE_FILES:
        for d in docs(path):
            if d["apiVersion"].startswith("ray.io/"):
                continue  # custom resource: see the RayJob tests
            kv.validate(d, K8S_VERSION, strict=True)
            kinds.append(d["kind"])
    assert set(kinds) == {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "CronJob"}

    cron = doc_of_kind(INFRA / "kubernetes" / "cronjob.yaml", "CronJob")
    bad = copy.deepcopy(cron)
    bad["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(kv.ValidationError):  # strict mode: an unknown field fails
        kv.validate(bad, K8S_VERSION, strict=True)


def test_kubectl_reads_every_manifest_offline():
    """kubectl's `--local` mode reads and decodes manifests with no cluster (shape, not schema: that is
    kubernetes-validate's part). `kubectl apply/create --dry-run=client -f` needs a cluster's API
    discovery even with --validate=false, so it cannot run here (infra/README.md)."""
    kubectl = need("kubectl")
    args = [kubectl, "label", "--local", "-o", "name", "gristmill.io/checked=true"]
    for path in KUBE_FILES:
        args += ["-f", str(path)]
    result = run(args, env={**os.environ, "KUBECONFIG": os.devnull})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "serviceaccount/gristmill-scheduler",
        "role.rbac.authorization.k8s.io/gristmill-create-rayjobs",
        "rolebinding.rbac.authorization.k8s.io/gristmill-scheduler-create-rayjobs",
        "configmap/gristmill-rayjob-template",
        "cronjob.batch/gristmill-weekly",
        "configmap/gristmill-release",
        "rayjob.ray.io/gristmill-web-20260105",
    ]


def pod_template_validator():
    """Kubernetes' PodTemplateSpec schema (strict) from kubernetes-validate's offline copy."""
    pytest.importorskip("kubernetes_validate", reason="pip install -e '.[dev]' (kubernetes-validate)")
    import jsonschema
    from kubernetes_validate.utils import all_versions, schema_contents
    from referencing import Registry, Resource

    def key(version: str) -> tuple:
        return tuple(int(x) for x in version.split(".")[:2])

    version = [v for v in all_versions() if key(v) <= key(K8S_VERSION)][-1]
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    schema = schema_contents(f"{folder}/podtemplatespec-v1.json", version)
    registry = Resource.from_contents(schema_contents(f"{folder}/_definitions.json", version)) @ (
        Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def check_rayjob(job: dict) -> None:
    """What can be checked of a RayJob without KubeRay's CRD."""
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    name = job["metadata"]["name"]
    # KubeRay (v1.4+) reconciles only DNS-1035 names of at most 47 characters (its cluster adds "-xxxxx")
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 47, name
    spec = job["spec"]
    assert spec["entrypoint"] == ENTRYPOINT
    args = parse_cli(shlex.split(spec["entrypoint"])[1:])
    assert (args.command, args.runner, args.address) == ("run", "ray", "auto")
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] >= 0
    env = yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]
    assert all(isinstance(v, str) for v in env.values()) and re.fullmatch(r"\d{8}", env["RELEASE_DATE"])

    cluster = spec["rayClusterSpec"]
    validator = pod_template_validator()
    head = cluster["headGroupSpec"]
    groups = [("head", head)] + [(g["groupName"], g) for g in cluster["workerGroupSpecs"]]
    for group, spec_ in groups:
        errors = [f"{group}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in validator.iter_errors(spec_["template"])]
        assert not errors, errors
        assert all(isinstance(v, str) for v in spec_["rayStartParams"].values())  # KubeRay wants strings
        for c in spec_["template"]["spec"]["containers"]:
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), (group, c["name"])
    # the entrypoint's config file comes from the ConfigMap mounted on the head, where the driver runs
    head_pod = head["template"]["spec"]
    (mount,) = [m for m in head_pod["containers"][0]["volumeMounts"] if m["mountPath"] == "/etc/gristmill"]
    (volume,) = [v for v in head_pod["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == "gristmill-release"
    gpu = [g for g in cluster["workerGroupSpecs"]
           if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]]
    assert gpu and all(g["minReplicas"] == 0 for g in gpu)
    bad = copy.deepcopy(head["template"])
    bad["spec"]["containers"][0]["volumeMount"] = []
    assert not validator.is_valid(bad)  # the schema check is real: a typo fails


def test_rayjob_pod_templates_and_entrypoint():
    check_rayjob(doc_of_kind(INFRA / "kuberay" / "rayjob.yaml", "RayJob"))


def test_release_configmap_config_loads(tmp_path, monkeypatch):
    """The release config in the ConfigMap, as the RayJob's driver reads it: the ConfigMap's files
    mounted (here: written to a temp folder), env from the RayJob's runtimeEnvYAML, with the crawl and
    the releases' root pointed at local folders instead of s3."""
    pytest.importorskip("ray", reason="the config's runner is ray (pip install -e '.[ray]')")
    from pipelines.config import load_config

    configmap = doc_of_kind(INFRA / "kuberay" / "release-configmap.yaml", "ConfigMap")
    mount = tmp_path / "etc-gristmill"
    mount.mkdir()
    for key, text in configmap["data"].items():
        (mount / key).write_text(text.replace("/etc/gristmill/", f"{mount}/"))
    assert "release.yaml" in configmap["data"]  # /etc/gristmill/release.yaml, the entrypoint's config

    job = doc_of_kind(INFRA / "kuberay" / "rayjob.yaml", "RayJob")
    env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]
    needed = set(re.findall(r"\$\{([A-Za-z_]\w*)\}", configmap["data"]["release.yaml"]))
    assert needed <= set(env), f"the config needs {sorted(needed - set(env))}, not set by the RayJob"
    env.update(CRAWL_ROOT=str(SAMPLE), RELEASES_ROOT=str(tmp_path / "releases"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    cfg = load_config(str(mount / "release.yaml"))
    assert cfg.release == f"web-{env['RELEASE_DATE']}"
    assert cfg.runner.kind == "ray" and cfg.runner.address == "auto"
    assert cfg.stages.dedup.against == []  # the first release: the glob matches nothing
    assert "score" not in cfg.stages.enabled()


def cronjob_script(cron: dict) -> tuple[str, dict]:
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["/bin/sh", "-c"]
    return container["command"][2], {e["name"]: e["value"] for e in container.get("env", [])}


def render_with_cronjob_script(tmp_path: Path, release_date: str | None) -> tuple[list[str], str]:
    """Runs the CronJob's own shell script with a stand-in kubectl that records what it was given."""
    path = INFRA / "kubernetes" / "cronjob.yaml"
    script, env = cronjob_script(doc_of_kind(path, "CronJob"))
    template = doc_of_kind(path, "ConfigMap")["data"]["rayjob.yaml"]
    (tmp_path / "rayjob.yaml").write_text(template)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "kubectl"
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\ncat > {tmp_path}/stdin\n')
    fake.chmod(0o755)
    env = {**env, "TEMPLATE": str(tmp_path / "rayjob.yaml"), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    if release_date:
        env["RELEASE_DATE"] = release_date
    result = run(["/bin/sh", "-c", script], env=env)
    assert result.returncode == 0, result.stderr
    return (tmp_path / "args").read_text().split(), (tmp_path / "stdin").read_text()


def test_cronjob_creates_the_rayjob_of_its_date(tmp_path):
    need("sed")
    path = INFRA / "kubernetes" / "cronjob.yaml"
    cron = doc_of_kind(path, "CronJob")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    _, env = cronjob_script(cron)
    # wiring: the template ConfigMap is mounted where TEMPLATE points; the ServiceAccount may create rayjobs
    (mount,) = pod["containers"][0]["volumeMounts"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert env["TEMPLATE"] == f"{mount['mountPath']}/rayjob.yaml"
    assert volume["configMap"]["name"] == doc_of_kind(path, "ConfigMap")["metadata"]["name"]
    role, binding = doc_of_kind(path, "Role"), doc_of_kind(path, "RoleBinding")
    assert {"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": ["create", "get", "list"]} in role["rules"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": pod["serviceAccountName"]}]
    assert pod["serviceAccountName"] == doc_of_kind(path, "ServiceAccount")["metadata"]["name"]

    # the template rendered for 20260105 is exactly infra/kuberay/rayjob.yaml (they are kept in step)
    args, rendered = render_with_cronjob_script(tmp_path, "20260105")
    assert args == ["create", "-f", "-"]
    job = yaml.safe_load(rendered)
    assert job == doc_of_kind(INFRA / "kuberay" / "rayjob.yaml", "RayJob")
    check_rayjob(job)

    # scheduled: no RELEASE_DATE given, so today's UTC date names the RayJob and is set in its env
    before = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")
    _, rendered = render_with_cronjob_script(tmp_path, None)
    after = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")
    job = yaml.safe_load(rendered)
    date = yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]["RELEASE_DATE"]
    assert date in (before, after) and job["metadata"]["name"] == f"gristmill-web-{date}"
    assert "__RELEASE_DATE__" not in rendered


# ---------------------------------------------------------------- systemd

SYSTEMD = INFRA / "systemd"


def test_systemd_units_verify(tmp_path):
    analyze = need("systemd-analyze")
    service = (SYSTEMD / "gristmill-release.service").read_text()
    assert "/opt/gristmill/infra/scheduled/release.sh configs/releases/weekly-web.yaml" in service
    # the units name the checkout as /opt/gristmill: point them at this one, so ExecStart is checked for real
    (tmp_path / "gristmill-release.service").write_text(service.replace("/opt/gristmill", str(ROOT)))
    shutil.copy(SYSTEMD / "gristmill-release.timer", tmp_path)
    units = [str(tmp_path / "gristmill-release.service"), str(tmp_path / "gristmill-release.timer")]
    result = run([analyze, "verify", *units])
    # verify exits 0 on unknown keys and bad values ("..., ignoring"): any line about our units fails
    ours = [line for line in (result.stdout + result.stderr).splitlines()
            if str(tmp_path) in line or "gristmill-release" in line]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr


def test_systemd_timer_is_weekly():
    analyze = need("systemd-analyze")
    timer = (SYSTEMD / "gristmill-release.timer").read_text()
    (calendar,) = re.findall(r"^OnCalendar=(.+)$", timer, re.M)
    result = run([analyze, "calendar", "--iterations=3", calendar])
    assert result.returncode == 0, result.stderr
    elapses = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", result.stdout)
    times = [dt.datetime.fromisoformat(t) for t in elapses]
    assert len(times) == 3 and all(b - a == dt.timedelta(days=7) for a, b in zip(times, times[1:])), result.stdout


def test_release_script_syntax():
    bash = need("bash")
    script = INFRA / "scheduled" / "release.sh"
    assert os.access(script, os.X_OK), "release.sh must be executable (systemd runs it directly)"
    result = run([bash, "-n", str(script)])
    assert result.returncode == 0, result.stderr
    assert "set -euo pipefail" in script.read_text()
    lines = [shlex.split(line.strip())[1:] for line in script.read_text().splitlines()
             if line.strip().startswith("gristmill ")]
    assert [argv[0] for argv in lines] == ["run", "report", "diff"]
    for argv in lines:  # shell variables stand for paths; "$@" (the pass-through options) adds nothing
        parse_cli([a.replace("$", "") for a in argv if a != "$@"])


def test_scheduled_release_runs_twice(tmp_path):
    """release.sh as the timer runs it: week 1 on one sample file, week 2 on both; week 2 is deduplicated
    against week 1 (the `against` glob), gets a report and a diff against week 1."""
    need("bash")
    bin_dir = Path(sys.executable).parent  # the gristmill of this environment
    if not (bin_dir / "gristmill").exists():
        pytest.skip(f"no gristmill command beside {sys.executable} (pip install -e .)")
    releases = tmp_path / "releases"
    week1, week2 = tmp_path / "crawl-1", tmp_path / "crawl-2"
    week1.mkdir()
    shutil.copy(SAMPLE / "SAMPLE-00000.warc.gz", week1)
    shutil.copytree(SAMPLE, week2)
    base = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RELEASES_ROOT": str(releases)}
    script = str(INFRA / "scheduled" / "release.sh")

    first = run([script, "configs/releases/weekly-web.yaml"], cwd=ROOT, timeout=300,
                env={**base, "RELEASE_DATE": "20260101", "CRAWL_ROOT": str(week1)})
    assert first.returncode == 0, first.stdout + first.stderr
    assert "no release before" in first.stdout

    second = run([script, "configs/releases/weekly-web.yaml", "--workers", "2"], cwd=ROOT, timeout=300,
                 env={**base, "RELEASE_DATE": "20260108", "CRAWL_ROOT": str(week2)})
    assert second.returncode == 0, second.stdout + second.stderr
    out, previous = releases / "web-20260108", releases / "web-20260101"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["release"] == "web-20260108"
    against = manifest["config"]["stages"]["dedup"]["against"]
    assert [os.path.realpath(a) for a in against] == [os.path.realpath(previous)]
    assert (out / "report.html").stat().st_size > 0
    assert f"A: {previous}" in second.stdout and f"B: {out}" in second.stdout  # gristmill diff's output
    assert "stages.dedup.against" in second.stdout
    # week 1's index was reused: what week 1 shipped comes back in week 2's input and is removed as a
    # duplicate of week 1's own document, while week 2's new file still gives documents
    from pipelines import stats

    shipped = {r[0] for r in stats.connect(str(previous)).execute("SELECT id FROM docs_dedup").fetchall()}
    con = stats.connect(str(out))
    again = dict(con.execute("SELECT id, duplicate_of FROM rejects WHERE stage = 'dedup' "
                             "AND reason = 'duplicate'").fetchall())
    assert shipped and shipped <= set(again) and {again[i] for i in shipped} <= shipped
    assert con.execute("SELECT count(*) FROM docs_dedup WHERE input_file LIKE '%SAMPLE-00001%'").fetchone()[0] > 0


# ---------------------------------------------------------------- Beam on Flink

FLINK = INFRA / "beam" / "flink-release.yaml"


def test_flink_release_validates(tmp_path, monkeypatch, capsys):
    pytest.importorskip("apache_beam", reason="pip install -e '.[beam]'")
    from pipelines.cli import main
    from pipelines.config import ConfigError, load_config

    monkeypatch.setenv("RELEASE_DATE", "20260105")
    monkeypatch.setenv("RELEASES_ROOT", str(tmp_path))
    monkeypatch.chdir(ROOT)
    assert main(["validate", str(FLINK)]) == 0, capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"runner\.options\.flink_mastr"):  # options are really checked
        load_config(str(FLINK), {"runner.options.flink_mastr": "localhost:8081"})


def test_flink_options_parse_into_flink_runner_options():
    pytest.importorskip("apache_beam", reason="pip install -e '.[beam]'")
    from apache_beam.options.pipeline_options import (
        FlinkRunnerOptions,
        PipelineOptions,
        PortableOptions,
        StandardOptions,
    )

    runner = yaml.safe_load(FLINK.read_text())["runner"]
    assert runner["kind"] == "beam"
    options = PipelineOptions.from_dictionary(runner["options"])
    flink = options.view_as(FlinkRunnerOptions)
    assert (flink.flink_master, flink.parallelism, flink.flink_version) == ("localhost:8081", 2, "1.20")
    assert options.view_as(PortableOptions).environment_type == "LOOPBACK"
    assert options.view_as(StandardOptions).runner == "FlinkRunner"
    compose = yaml.safe_load((INFRA / "beam" / "docker-compose.yaml").read_text())
    for name, service in compose["services"].items():  # the Flink the options name is the one compose starts
        assert service["image"].startswith(f"flink:{flink.flink_version}-"), name


def test_flink_compose_file_follows_the_compose_spec():
    pytest.importorskip("check_jsonschema", reason="pip install -e '.[dev]' (check-jsonschema)")
    compose = INFRA / "beam" / "docker-compose.yaml"
    result = run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(compose)])
    assert result.returncode == 0, result.stdout + result.stderr
    services = yaml.safe_load(compose.read_text())["services"]
    assert {s["command"] for s in services.values()} == {"jobmanager", "taskmanager"}


def test_flink_compose_file_with_docker_compose():
    docker = need("docker")
    if run([docker, "compose", "version"]).returncode != 0:
        pytest.skip("the docker compose plugin is not installed on this machine")
    result = run([docker, "compose", "-f", str(INFRA / "beam" / "docker-compose.yaml"), "config", "--quiet"])
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- Docker image, README

def test_dockerfile_parses_and_copies_what_exists():
    dockerfile = pytest.importorskip("dockerfile", reason="pip install -e '.[dev]' (dockerfile: BuildKit's parser)")
    import tomllib

    path = INFRA / "docker" / "Dockerfile"
    commands = dockerfile.parse_file(str(path))
    known = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
             "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}
    assert {c.cmd.upper() for c in commands} <= known
    assert commands[0].cmd.upper() == "FROM"
    for c in commands:
        if c.cmd.upper() == "COPY":  # the build context is the repository root
            for src in c.value[:-1]:
                assert (ROOT / src).exists(), f"{c.original}: {src} is not in the repository"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = set(pyproject["project"]["optional-dependencies"])
    for c in commands:
        for group in re.findall(r'"\.\[([^]]+)\]"', c.original):
            assert set(group.split(",")) <= extras, c.original
    # the image the manifests run is the one the Dockerfile says it builds, at the package's version
    tag = re.search(r"-t (\S+)", path.read_text()).group(1)
    assert tag.endswith(":" + pyproject["project"]["version"])
    images = re.findall(r"image: (\S+)", (INFRA / "kuberay" / "rayjob.yaml").read_text())
    assert images and set(images) == {tag}


def test_infra_readme_documents_every_file():
    readme = (INFRA / "README.md").read_text()
    files = sorted(p.relative_to(ROOT).as_posix() for p in INFRA.rglob("*") if p.is_file() and p.name != "README.md")
    files.append("configs/releases/weekly-web.yaml")
    missing = [f for f in files if f not in readme]
    assert not missing, f"infra/README.md does not describe {missing}"
