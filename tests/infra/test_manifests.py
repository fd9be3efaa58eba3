"""The server-scale deployment files, checked offline with the tools that will read them.

- infra/docker-compose.yml: `docker compose config` (the compose v2 client; `make
  test-deps` puts it in .venv/bin) resolves and validates it, no Docker engine needed.
- infra/k8s: every manifest against the Kubernetes JSON schemas that kubernetes-validate
  bundles (strict: unknown fields fail), and the GPU job the work pool's base job template
  renders for the `retrain` deployment, through Prefect's own templating.
- prefect.yaml: Prefect's deploy models; entrypoints exist and name flows.

A validator that is missing skips these tests on a laptop and fails them under CI=true.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
COMPOSE_FILE = INFRA / "docker-compose.yml"
K8S = INFRA / "k8s"
GPU_POOL_FILE = K8S / "work-pool-gpu.json"
WEAVIATE_VALUES = K8S / "weaviate-values.yaml"
STACK_PARAMS = INFRA / "params.stack.yaml"
PREFECT_YAML = ROOT / "prefect.yaml"
K8S_VERSION = "1.33.0"  # the oldest Kubernetes minor the manifests target

STACK_SERVICES = {
    "postgres",
    "weaviate",
    "minio",
    "minio-init",
    "mlflow",
    "mlflow-init",
    "prefect-server",
    "prefect-worker",
}
ONE_SHOT_SERVICES = {"minio-init", "mlflow-init"}
DEPLOYMENTS = {
    "refresh-index": "flows/refresh_index.py:refresh_index",
    "retrain": "flows/retrain.py:retrain",
    "retrain-trigger": "flows/retrain.py:retrain_trigger",
    "evaluate": "flows/evaluate.py:evaluate",
}
PROCESS_POOL = "ragtune-process"
GPU_POOL = "ragtune-k8s-gpu"


def tool_missing(message: str) -> None:
    """Skip on a developer machine; fail in CI, where a skipped check would hide a gap."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message} (CI=true: run `make test-deps` / `make install`)")
    pytest.skip(message)


def compose_command() -> list[str] | None:
    """`docker compose` if the plugin is there, else a v2 `docker-compose` binary."""
    docker = shutil.which("docker")
    if docker:
        found = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
        if found.returncode == 0 and "v2." in found.stdout:
            return [docker, "compose"]
    beside_python = Path(sys.executable).parent / "docker-compose"
    for candidate in (str(beside_python), shutil.which("docker-compose")):
        if candidate and Path(candidate).is_file():
            found = subprocess.run([candidate, "version"], capture_output=True, text=True)
            if found.returncode == 0 and "version v2." in found.stdout:
                return [candidate]
    return None


@pytest.fixture(scope="module")
def compose() -> list[str]:
    command = compose_command()
    if command is None:
        tool_missing("the docker compose v2 client is not installed")
    assert command is not None
    return command


def compose_config(compose: list[str], file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`docker compose config` on `file`, resolved against infra/ whatever its folder."""
    env = {k: v for k, v in os.environ.items() if k != "COMPOSE_FILE"}
    return subprocess.run(
        [*compose, "-f", str(file), "--project-directory", str(INFRA), "config", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.fixture(scope="module")
def stack(compose: list[str]) -> dict[str, Any]:
    done = compose_config(compose, COMPOSE_FILE, "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def kv() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        tool_missing("kubernetes-validate is not installed (pip install -e '.[dev]')")
    return kubernetes_validate


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    """Every Kubernetes object in infra/k8s (the Helm values file is not one)."""
    documents = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path == WEAVIATE_VALUES:
            continue
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                name = f"{path.relative_to(K8S)}:{document['kind']}/{document['metadata']['name']}"
                documents.append((name, document))
    return documents


def gpu_pool() -> dict[str, Any]:
    return json.loads(GPU_POOL_FILE.read_text(encoding="utf-8"))


def prefect_deployments() -> dict[str, dict[str, Any]]:
    from prefect.cli.deploy._models import PrefectYamlModel

    raw = yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))
    model = PrefectYamlModel.model_validate(raw)
    return {d.name: d.model_dump(exclude_unset=True, mode="json") for d in model.deployments}


def render_job(template: dict[str, Any], job_variables: dict[str, Any]) -> dict[str, Any]:
    """The Job manifest a Kubernetes worker builds: variable defaults, then the deployment's
    job variables, applied to the template by Prefect's templating (as the worker does).
    Values the worker fills in per flow run (name, env, command) stay unset."""
    from prefect.utilities.templating import apply_values

    values = {
        name: spec["default"]
        for name, spec in template["variables"]["properties"].items()
        if spec.get("default") is not None
    }
    values.update(job_variables)
    configuration = apply_values(copy.deepcopy(template["job_configuration"]), values)
    return configuration["job_manifest"]


# -- docker compose --------------------------------------------------------------------


def test_compose_file_resolves_to_the_stack(stack: dict[str, Any]) -> None:
    assert set(stack["services"]) == STACK_SERVICES
    assert set(stack["volumes"]) >= {"postgres-data", "weaviate-data", "minio-data"}


def test_compose_quiet_check_passes(compose: list[str]) -> None:
    done = compose_config(compose, COMPOSE_FILE, "--quiet")
    assert done.returncode == 0, done.stderr


def test_compose_rejects_a_misspelt_key(compose: list[str], tmp_path: Path) -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert "    healthcheck:" in text
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace("    healthcheck:", "    healthchek:", 1), encoding="utf-8")
    done = compose_config(compose, broken, "--quiet")
    assert done.returncode != 0
    assert "healthchek" in done.stderr


def test_compose_images_are_pinned(stack: dict[str, Any]) -> None:
    """Pulled images carry a version tag; built ones pin their base in their Dockerfile."""
    for name, service in stack["services"].items():
        if "build" in service:
            continue
        _, _, tag = service["image"].rpartition(":")
        assert tag[:1].isdigit() or tag.startswith("RELEASE."), (name, service["image"])
    assert stack["services"]["mlflow"]["build"]["args"]["MLFLOW_VERSION"].startswith("v3.")


def test_compose_services_start_in_order_and_report_health(stack: dict[str, Any]) -> None:
    services = stack["services"]
    for name, service in services.items():
        if name not in ONE_SHOT_SERVICES:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dependency, how in service.get("depends_on", {}).items():
            expected = (
                "service_completed_successfully"
                if dependency in ONE_SHOT_SERVICES
                else "service_healthy"
            )
            assert how["condition"] == expected, (name, dependency)
    assert set(services["prefect-worker"]["depends_on"]) >= {
        "postgres",
        "weaviate",
        "mlflow-init",
        "prefect-server",
    }


def test_compose_mlflow_keeps_runs_in_postgres_and_artifacts_in_minio(
    stack: dict[str, Any],
) -> None:
    mlflow = stack["services"]["mlflow"]
    command = " ".join(mlflow["command"])
    assert "--artifacts-destination s3://ragtune-mlflow" in command
    assert "--workers 1" in command
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql")
    assert mlflow["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    init = " ".join(stack["services"]["minio-init"]["command"])
    assert "ragtune-mlflow" in init and "ragtune-dvc" in init
    prefect = stack["services"]["prefect-server"]["environment"]
    assert prefect["PREFECT_SERVER_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg")


def test_compose_turns_telemetry_off(stack: dict[str, Any]) -> None:
    services = stack["services"]
    assert services["mlflow"]["environment"]["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert services["weaviate"]["environment"]["DISABLE_TELEMETRY"] == "true"
    for name in ("prefect-server", "prefect-worker"):
        env = services[name]["environment"]
        assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false", name
        assert env["DO_NOT_TRACK"] == "1", name


def test_compose_secrets_come_from_the_environment(compose: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "COMPOSE_FILE"}
    env.update(POSTGRES_PASSWORD="from-env-1", WEAVIATE_API_KEY="from-env-2")
    done = subprocess.run(
        [*compose, "-f", str(COMPOSE_FILE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "from-env-1"
    assert "from-env-1" in services["prefect-worker"]["environment"]["RAGTUNE_SOURCE_URL"]
    weaviate = services["weaviate"]["environment"]
    assert weaviate["AUTHENTICATION_APIKEY_ALLOWED_KEYS"] == "from-env-2"
    assert services["prefect-worker"]["environment"]["WEAVIATE_API_KEY"] == "from-env-2"


def test_compose_weaviate_leaves_embedding_to_ragtune(stack: dict[str, Any]) -> None:
    env = stack["services"]["weaviate"]["environment"]
    assert env["DEFAULT_VECTORIZER_MODULE"] == "none"
    assert env["ENABLE_MODULES"] == ""


# -- Kubernetes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document", [d for _, d in k8s_documents()], ids=[n for n, _ in k8s_documents()]
)
def test_k8s_manifest_matches_the_kubernetes_schema(kv: Any, document: dict[str, Any]) -> None:
    kv.validate(document, K8S_VERSION, strict=True)


def test_k8s_manifests_cover_the_worker_and_its_permissions() -> None:
    kinds = {name.split(":")[1] for name, _ in k8s_documents()}
    assert {
        "Namespace/ragtune",
        "ServiceAccount/prefect-worker",
        "Role/prefect-worker",
        "RoleBinding/prefect-worker",
        "Deployment/prefect-worker",
        "Deployment/ragtune-worker",
        "Secret/ragtune-secrets",
        "ConfigMap/ragtune-params",
        "ConfigMap/ragtune-env",
        "PersistentVolumeClaim/ragtune-workspace",
    } <= kinds
    role = next(d for n, d in k8s_documents() if n.endswith(":Role/prefect-worker"))
    jobs = next(rule for rule in role["rules"] if "jobs" in rule["resources"])
    assert jobs["apiGroups"] == ["batch"] and "create" in jobs["verbs"]


def test_k8s_validator_rejects_a_misspelt_field(kv: Any) -> None:
    deployment = next(d for n, d in k8s_documents() if n.endswith("Deployment/prefect-worker"))
    broken = copy.deepcopy(deployment)
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["resourcez"] = container.pop("resources")
    with pytest.raises(kv.ValidationError, match="resourcez"):
        kv.validate(broken, K8S_VERSION, strict=True)


def test_gpu_work_pool_template_is_accepted_by_prefect() -> None:
    from prefect.server.schemas.actions import WorkPoolCreate

    pool = WorkPoolCreate(name=GPU_POOL, type="kubernetes", base_job_template=gpu_pool())
    variables = pool.base_job_template["variables"]["properties"]
    assert variables["gpu_count"]["default"] >= 1
    assert variables["node_selector"]["default"]
    assert any(t["key"] == "nvidia.com/gpu" for t in variables["tolerations"]["default"])


def test_gpu_job_for_retrain_is_a_valid_kubernetes_job(kv: Any) -> None:
    retrain = prefect_deployments()["retrain"]
    job = render_job(gpu_pool(), retrain["work_pool"]["job_variables"])
    kv.validate(job, K8S_VERSION, strict=True)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/opt/ragtune/params.yaml", "/var/lib/ragtune", "/dev/shm"} <= mounts


def test_gpu_job_variables_fit_the_pool_schema() -> None:
    from prefect.utilities.schema_tools import ValidationError, validate

    schema = gpu_pool()["variables"]
    job_variables = prefect_deployments()["retrain"]["work_pool"]["job_variables"]
    validate(job_variables, schema, raise_on_error=True, preprocess=True, ignore_required=True)
    with pytest.raises(ValidationError):
        validate({"gpu_count": "one"}, schema, raise_on_error=True, preprocess=True)


def test_weaviate_values_replicate_every_collection_three_times() -> None:
    values = yaml.safe_load(WEAVIATE_VALUES.read_text(encoding="utf-8"))
    assert values["replicas"] == 3
    assert int(values["env"]["REPLICATION_MINIMUM_FACTOR"]) == 3
    assert int(values["env"]["RAFT_BOOTSTRAP_EXPECT"]) == 3
    assert values["modules"]["default_vectorizer_module"] == "none"
    assert values["grpcService"]["enabled"] is True
    anti = values["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
    assert values["image"]["tag"][0].isdigit()


def test_params_configmap_holds_the_stack_params_and_they_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ragtune.config import load_params

    configmap = next(d for n, d in k8s_documents() if n.endswith("ConfigMap/ragtune-params"))
    assert configmap["data"]["params.yaml"] == STACK_PARAMS.read_text(encoding="utf-8")
    monkeypatch.setenv("RAGTUNE_SOURCE_URL", "postgresql+psycopg://u:p@db:5432/ragtune_source")
    monkeypatch.setenv("WEAVIATE_API_KEY", "key")
    monkeypatch.setenv("WEAVIATE_URL", "http://weaviate:8080")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    params = load_params(STACK_PARAMS)
    assert params.index.backend == "weaviate"
    assert params.index.url == "http://weaviate:8080"
    assert params.tracking_uri() == "http://mlflow:5000"
    assert params.dvc_remote().startswith("s3://")


# -- prefect.yaml ----------------------------------------------------------------------


def flow_function(entrypoint: str) -> ast.FunctionDef:
    path, _, name = entrypoint.partition(":")
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise AssertionError(f"{path} defines no function {name}")


def is_flow_decorator(node: ast.expr) -> bool:
    target = node.func if isinstance(node, ast.Call) else node
    return isinstance(target, ast.Name) and target.id == "flow"


def test_prefect_yaml_deploys_the_four_flows() -> None:
    deployments = prefect_deployments()
    assert {name: d["entrypoint"] for name, d in deployments.items()} == DEPLOYMENTS
    for name, deployment in deployments.items():
        function = flow_function(deployment["entrypoint"])
        assert any(is_flow_decorator(d) for d in function.decorator_list), name
        arguments = {a.arg for a in function.args.args + function.args.kwonlyargs}
        assert set(deployment.get("parameters", {})) <= arguments, name


def test_prefect_yaml_schedules_and_pools() -> None:
    from prefect.cli.deploy._models import RawScheduleConfig

    deployments = prefect_deployments()
    for deployment in deployments.values():
        for schedule in deployment.get("schedules") or []:
            RawScheduleConfig.model_validate(schedule)
    assert deployments["retrain"]["schedules"][0]["cron"] == "0 3 * * *"
    assert deployments["retrain"]["work_pool"]["name"] == GPU_POOL
    for name in ("refresh-index", "retrain-trigger", "evaluate"):
        assert deployments[name]["work_pool"]["name"] == PROCESS_POOL, name


def test_prefect_yaml_pull_step_exists() -> None:
    import importlib

    raw = yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))
    for step in raw["pull"]:
        (qualified,) = step
        module, _, function = qualified.rpartition(".")
        assert callable(getattr(importlib.import_module(module), function)), qualified


def test_workers_poll_the_pools_prefect_yaml_names(stack: dict[str, Any]) -> None:
    def pool_of(args: list[str]) -> str:
        return args[args.index("--pool") + 1]

    assert pool_of(stack["services"]["prefect-worker"]["command"]) == PROCESS_POOL
    deployments = {n: d for n, d in k8s_documents() if ":Deployment/" in n}
    containers = {
        n.rpartition("/")[2]: d["spec"]["template"]["spec"]["containers"][0]
        for n, d in deployments.items()
    }
    assert pool_of(containers["prefect-worker"]["args"]) == GPU_POOL
    assert "kubernetes" in containers["prefect-worker"]["args"]
    assert pool_of(containers["ragtune-worker"]["args"]) == PROCESS_POOL
