"""deploy/k8s checked offline, no cluster: the RayService and the ScaledObject against JSON
schemas taken from the KubeRay and KEDA CRDs (strict: an unknown field is an error), the Serve
config inside the RayService against Ray Serve's own schema with its import paths resolved, the
KEDA query parsed by promtool and naming a metric swiftshot exports, and the front's command
and environment accepted by swiftshot itself."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = K8S / "schemas"
CASES = [("rayservice.yaml", "rayservice-ray.io-v1.json"),
         ("scaledobject.yaml", "scaledobject-keda.sh-v1alpha1.json")]


def check_jsonschema(schema: Path, instance: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--schemafile", str(schema),
                           str(instance)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("manifest", "schema"), CASES)
def test_manifest_matches_its_crd_schema(manifest, schema):
    r = check_jsonschema(SCHEMAS / schema, K8S / manifest)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(("manifest", "schema", "path", "bad"), [
    ("rayservice.yaml", "rayservice-ray.io-v1.json", ("spec", "rayClusterConfig",
                                                      "workerGroupSpecs", 0), "minReplica"),
    ("rayservice.yaml", "rayservice-ray.io-v1.json", ("spec",), "serveConfig"),
    ("scaledobject.yaml", "scaledobject-keda.sh-v1alpha1.json", ("spec",), "maxReplicas"),
    ("scaledobject.yaml", "scaledobject-keda.sh-v1alpha1.json", ("spec", "triggers", 0),
     "metadat"),
])
def test_schema_check_catches_a_misspelt_field(tmp_path, manifest, schema, path, bad):
    doc = yaml.safe_load((K8S / manifest).read_text())
    node = doc
    for p in path:
        node = node[p]
    node[bad] = node.get(bad, 1)
    (tmp_path / manifest).write_text(yaml.safe_dump(doc))
    r = check_jsonschema(SCHEMAS / schema, tmp_path / manifest)
    assert r.returncode != 0 and bad in r.stdout, r.stdout + r.stderr


def test_schema_check_catches_a_wrong_type(tmp_path):
    doc = yaml.safe_load((K8S / "scaledobject.yaml").read_text())
    doc["spec"]["minReplicaCount"] = "two"
    (tmp_path / "so.yaml").write_text(yaml.safe_dump(doc))
    r = check_jsonschema(SCHEMAS / "scaledobject-keda.sh-v1alpha1.json", tmp_path / "so.yaml")
    assert r.returncode != 0 and "minReplicaCount" in r.stdout


def serve_config() -> dict:
    doc = yaml.safe_load((K8S / "rayservice.yaml").read_text())
    return yaml.safe_load(doc["spec"]["serveConfigV2"])


def test_serve_config_is_valid_for_the_installed_ray_serve():
    schema = pytest.importorskip("ray.serve.schema")
    cfg = schema.ServeDeploySchema.model_validate(serve_config())
    assert {a.name for a in cfg.applications} == {"swiftshot-studio", "swiftshot-diffusion"}
    for app in cfg.applications:
        module, _, name = app.import_path.partition(":")
        assert callable(getattr(importlib.import_module(module), name)), app.import_path
        (dep,) = app.deployments
        asc = dep.autoscaling_config
        policy = asc["policy"]["policy_function"]
        module, _, name = policy.partition(":")
        assert callable(getattr(importlib.import_module(module), name)), policy
        assert 1 <= asc["min_replicas"] <= asc["max_replicas"]
        assert dep.max_ongoing_requests == 1  # the front batches; one batch per replica


def test_serve_config_matches_what_the_executor_would_deploy():
    """Field names and the policy the manifest uses are the ones RayExecutor passes to Serve."""
    pytest.importorskip("ray.serve")
    from swiftshot.config import RaySettings
    from swiftshot.runtime.ray_executor import deployment_options

    opts = deployment_options(RaySettings(min_replicas=1, max_replicas=16))
    (studio,) = serve_config()["applications"][0]["deployments"]
    assert set(studio["autoscaling_config"]) == set(opts["autoscaling_config"])
    assert studio["autoscaling_config"]["policy"] == opts["autoscaling_config"]["policy"]
    assert set(studio) - {"name"} <= set(opts)


def containers(manifest: str) -> list[tuple[str, dict]]:
    """(where, container) for every pod template in a manifest."""
    out = []
    for doc in yaml.safe_load_all((K8S / manifest).read_text()):
        spec = (doc or {}).get("spec", {})
        cluster = spec.get("rayClusterConfig")
        if cluster:
            groups = [("head", cluster["headGroupSpec"])]
            groups += [(g["groupName"], g) for g in cluster["workerGroupSpecs"]]
            for name, g in groups:
                out += [(f"{manifest} {name}", c) for c in g["template"]["spec"]["containers"]]
        elif doc.get("kind") == "Deployment":
            out += [(manifest, c) for c in spec["template"]["spec"]["containers"]]
    return out


def test_every_ray_process_gets_the_serve_settings_swiftshot_sets_locally():
    """Serve reads RAY_SERVE_* once per process, on each node: the head (controller), the
    workers (replicas) and the front (router) must all run with what `swiftshot serve` sets
    for a local Ray — direct ingress off included, or every stopping replica is held 30 s."""
    pytest.importorskip("ray.serve")
    from swiftshot.config import RaySettings
    from swiftshot.runtime.ray_executor import serve_env

    want = serve_env(RaySettings())
    assert want["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "0"
    found = containers("rayservice.yaml") + containers("front.yaml")
    assert len(found) == 4, [w for w, _ in found]  # head, cpu, gpu, front
    for where, c in found:
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        assert {k: env.get(k) for k in want} == want, where


def test_keda_query_parses_and_names_an_exported_metric(tmp_path):
    from tests.measurement.test_deploy import exported_names, named_metrics

    doc = yaml.safe_load((K8S / "scaledobject.yaml").read_text())
    (trigger,) = doc["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    query = trigger["metadata"]["query"]
    assert named_metrics([query]) == {"swiftshot_queue_depth"} <= exported_names()
    exe = shutil.which("promtool")
    assert exe, "promtool is needed (Debian package prometheus; .ci/run installs it)"
    (tmp_path / "q.yml").write_text(yaml.safe_dump(
        {"groups": [{"name": "keda", "rules": [{"record": "keda:query", "expr": query}]}]}))
    r = subprocess.run([exe, "check", "rules", "q.yml"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    from swiftshot.config import PRIORITIES

    for p in ("realtime", "standard"):
        assert p in PRIORITIES and p in query


def test_front_command_and_environment_are_accepted_by_swiftshot(monkeypatch):
    import argparse

    from swiftshot.cli import serve as serve_cli
    from swiftshot.config import load_settings

    docs = list(yaml.safe_load_all((K8S / "front.yaml").read_text()))
    (deploy,) = [d for d in docs if d["kind"] == "Deployment"]
    (c,) = deploy["spec"]["template"]["spec"]["containers"]
    cmd = c["args"][0].split("exec ", 1)[1].split()
    assert cmd[:2] == ["swiftshot", "serve"]
    parser = argparse.ArgumentParser()
    serve_cli.register(parser.add_subparsers())
    args = parser.parse_args(cmd[1:])
    assert args.executor == "ray" and args.ray_address == "auto"
    env = {e["name"]: e["value"] for e in c["env"] if e["name"] != "SWIFTSHOT_CONFIG"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = load_settings(None)
    assert s.ray.deploy is False and s.cache.redis_url == env["SWIFTSHOT_REDIS_URL"]
    # the head service KubeRay creates for the RayService is <name>-head-svc
    ray_service = yaml.safe_load((K8S / "rayservice.yaml").read_text())
    assert f"{ray_service['metadata']['name']}-head-svc:6379" in c["args"][0]
    so = yaml.safe_load((K8S / "scaledobject.yaml").read_text())
    assert so["spec"]["scaleTargetRef"]["name"] == deploy["metadata"]["name"]


def test_vendored_schemas_name_their_source_and_licence():
    readme = (SCHEMAS / "README.md").read_text()
    for name in ("kuberay", "keda", "Apache-2.0", "vendor_crds.py"):
        assert name.lower() in readme.lower()
    for _, schema in CASES:
        import json

        comment = json.loads((SCHEMAS / schema).read_text())["$comment"]
        assert "github.com/" in comment and "@" in comment and "Apache-2.0" in comment
