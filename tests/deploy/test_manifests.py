"""deploy/: the KubeRay manifests, the Prefect deployments and the container build file hang together.

Checks use the readers the real tools use where one exists: Ray's KubeRay autoscaler derives the
node types (CPUs, GPUs, memory) from a RayCluster spec, Prefect's own models read prefect.yaml and
its schedules, Prefect loads each entrypoint as a flow, and the CLI's own parser reads the
RayJob entrypoint.
"""
from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
IMAGE_ROOT = "/opt/cirforge"  # WORKDIR of deploy/Dockerfile


def load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


def derive_node_types(cluster_spec: dict, name: str = "cirforge") -> dict:
    """Node types as KubeRay's Ray autoscaler reads them from a RayCluster (raises on a bad spec)."""
    from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr

    cr = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": name, "namespace": "default"},
          "spec": cluster_spec}
    return _derive_autoscaling_config_from_ray_cr(cr)["available_node_types"]


def containers(cluster_spec: dict):
    groups = [cluster_spec["headGroupSpec"], *cluster_spec["workerGroupSpecs"]]
    for g in groups:
        yield from ((g, c) for c in g["template"]["spec"]["containers"])


def check_cluster_spec(spec: dict) -> None:
    assert spec["rayVersion"].split(".")[:2] == ["2", "60"], "rayVersion must match the image's ray 2.60"
    assert spec["authOptions"]["mode"] == "token"
    for g in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        assert isinstance(g["rayStartParams"], dict)
    types = derive_node_types(spec)
    head = types["headgroup"]
    assert head["resources"]["CPU"] == 0, "stages must not land on the head"
    gpu_groups = [g for g in spec["workerGroupSpecs"] if types[g["groupName"]]["resources"].get("GPU", 0) >= 1]
    assert gpu_groups, "no worker group with a GPU"
    for g in gpu_groups:
        res = g["template"]["spec"]["containers"][0]["resources"]
        assert int(res["limits"]["nvidia.com/gpu"]) >= 1
        assert res["requests"].get("nvidia.com/gpu", res["limits"]["nvidia.com/gpu"]) == res["limits"]["nvidia.com/gpu"]
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
        assert types[g["groupName"]]["max_workers"] == g["maxReplicas"]
    for g, c in containers(spec):
        assert c["image"] == "cirforge:0.1.0"
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert "/data" in mounts and "/dev/shm" in mounts
        assert mounts.get("/models", {"readOnly": True}).get("readOnly") is True
        volumes = {v["name"] for v in g["template"]["spec"]["volumes"]}
        assert {m["name"] for m in c["volumeMounts"]} <= volumes, f"{c['name']}: a mount names no volume"


def test_raycluster_has_a_gpu_worker_group_kuberay_can_read():
    doc = load("kuberay/raycluster.yaml")
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayCluster")
    check_cluster_spec(doc["spec"])
    ports = {p["name"]: p["containerPort"] for p in doc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]}
    assert ports["gcs-server"] == 6379  # prefect.yaml's RAY_ADDRESS


def test_rayjob_runs_the_gpu_config_with_a_command_the_cli_accepts():
    import typer.main

    from pipeline.job.cli import app

    doc = load("kuberay/rayjob.yaml")
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayJob")
    spec = doc["spec"]
    check_cluster_spec(spec["rayClusterSpec"])
    assert spec["shutdownAfterJobFinishes"] is True and spec["backoffLimit"] >= 1
    yaml.safe_load(spec["runtimeEnvYAML"])
    argv = shlex.split(spec["entrypoint"])
    assert argv[0] == "cirforge"
    group = typer.main.get_command(app)
    ctx = group.make_context("cirforge", argv[1:], resilient_parsing=False)
    sub = group.get_command(ctx, argv[1])
    sub_ctx = sub.make_context(argv[1], argv[2:], parent=ctx)
    assert sub_ctx.params["executor"] == "ray" and sub_ctx.params["flow"] is False
    config = Path(sub_ctx.params["config"])
    assert config.is_relative_to(IMAGE_ROOT), f"{config} is not inside the image's {IMAGE_ROOT}"
    assert (ROOT / config.relative_to(IMAGE_ROOT)).is_file()


def test_prefect_yaml_reads_with_prefects_models_and_names_real_flows():
    from prefect.cli.deploy._models import PrefectYamlModel, RawScheduleConfig
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import load_flow_from_entrypoint

    raw = load("prefect.yaml")
    model = PrefectYamlModel.model_validate(raw)
    deployments = {d.name: d for d in model.deployments}
    assert set(deployments) == {"generate", "nightly"}
    assert not deployments["generate"].schedules, "generate runs on demand"
    crons = [RawScheduleConfig.model_validate(s) for s in raw["deployments"][1]["schedules"]]
    assert [c.cron for c in crons] and all(c.cron for c in crons)
    for c in crons:
        CronSchedule(cron=c.cron, timezone=c.timezone)  # raises on a bad cron string or zone
    for d in model.deployments:
        path, func = d.entrypoint.split(":")
        assert (ROOT / path).is_file(), f"deployment {d.name}: {path} does not exist"
        flow = load_flow_from_entrypoint(str(ROOT / d.entrypoint.split(':')[0]) + f":{func}")
        schema = flow.parameters
        unknown = set(d.parameters) - set(schema.properties)
        assert not unknown, f"deployment {d.name}: {func} takes no {sorted(unknown)}"
        missing = set(schema.required or []) - set(d.parameters)
        assert not missing, f"deployment {d.name}: required parameters {sorted(missing)} are not set"
        for key, value in d.parameters.items():
            if key.endswith(("config", "config_path")) and isinstance(value, str):
                assert (ROOT / value).is_file(), f"deployment {d.name}: {key}={value} is not in the repo"
        check_flow_run_command(d.work_pool.job_variables)
    pull = raw["pull"][0]["prefect.deployments.steps.set_working_directory"]["directory"]
    assert pull == IMAGE_ROOT


def check_flow_run_command(job_variables: dict) -> None:
    """The flow-run pod joins the RayCluster's GCS as a node, then runs the flow with RAY_ADDRESS."""
    from ray.scripts.scripts import start as ray_start

    cluster = load("kuberay/raycluster.yaml")["metadata"]["name"]
    gcs = f"{cluster}-head-svc:6379"
    assert job_variables["env"]["RAY_ADDRESS"] == gcs
    argv = shlex.split(job_variables["command"])
    assert argv[:2] == ["bash", "-c"] and len(argv) == 3
    first, _, second = argv[2].partition(" && ")
    assert shlex.split(second) == ["exec", "prefect", "flow-run", "execute"]
    words = shlex.split(first)
    assert words[:2] == ["ray", "start"]
    params = ray_start.make_context("start", words[2:]).params  # Ray's own CLI parser
    assert params["address"] == gcs and params["num_cpus"] == 0 and params["num_gpus"] == 0


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_copies_files_that_exist_and_every_package_pyproject_installs():
    ins = dockerfile_instructions()
    assert ("WORKDIR", IMAGE_ROOT) in ins
    copied = set()
    for word, rest in ins:
        if word in ("COPY", "ADD"):
            args = [a for a in shlex.split(rest) if not a.startswith("--")]
            for src in args[:-1]:
                assert (ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"
                copied.add(src.rstrip("/"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    includes = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in includes}
    assert packages <= copied, f"pyproject packages the image does not copy: {sorted(packages - copied)}"
    assert {"pyproject.toml", project["project"]["readme"]} <= copied
    assert "configs" in copied  # the RayJob and prefect.yaml name configs/gpu.yaml inside the image
    runs = " ".join(rest for word, rest in ins if word == "RUN")
    torch_pin = re.search(r'TORCH_SPEC="(torch==[\d.]+)"', (DEPLOY / "Dockerfile").read_text()).group(1)
    assert torch_pin in project["project"]["dependencies"], "the image's torch pin differs from pyproject"
    assert "ray[default" in runs, "KubeRay probes and RayJob submission need ray[default]"


@pytest.mark.parametrize("name", ["kuberay/raycluster.yaml", "kuberay/rayjob.yaml", "prefect.yaml"])
def test_manifests_are_single_yaml_documents(name):
    docs = list(yaml.safe_load_all((DEPLOY / name).read_text()))
    assert len(docs) == 1 and isinstance(docs[0], dict)
