"""`ragtune up` / `ragtune down`: the Prefect UI, the MLflow UI and the served deployments.

`up` starts three background processes for a workspace, each in its own process group
with its log under `<workspace>/logs/`:

- the Prefect server (UI and API; SQLite under `<workspace>/prefect/`),
- the MLflow server (UI over the workspace's tracking store and artifacts, one worker),
- `python -m flows.serve`, which holds the deployments refresh-index and, when params has
  a `training:` section, retrain, retrain-trigger and evaluate, and runs their flow runs.

It waits until each answers (the Prefect API's health, MLflow's /health, and the
deployments registered), then records the PIDs in `<workspace>/services.json`. `down`
stops exactly those processes (a PID is only signalled while its start time matches the
recorded one, so a recycled PID is never touched) and their children, then checks the
ports are free. Telemetry of both servers is off.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragtune.config import Params
from ragtune.errors import ServiceError

STATE_FILE = "services.json"
INDEX_DEPLOYMENTS = ("refresh_index/refresh-index",)
TRAINING_DEPLOYMENTS = (
    "retrain/retrain",
    "retrain_trigger/retrain-trigger",
    "evaluate/evaluate",
)
QUIET = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


@dataclass
class Service:
    name: str
    pid: int
    started: float  # the process's start time (psutil create_time), guards against reuse
    log: str
    url: str | None = None
    port: int | None = None


def deployments(params: Params) -> tuple[str, ...]:
    """FLOW/DEPLOYMENT names `up` serves: the training ones only with a `training:` section
    (without one they could only fail on every schedule)."""
    return INDEX_DEPLOYMENTS + (TRAINING_DEPLOYMENTS if params.training is not None else ())


def urls(params: Params) -> dict[str, str]:
    host = params.services.host
    return {
        "prefect": f"http://{host}:{params.services.prefect_port}",
        "mlflow": f"http://{host}:{params.services.mlflow_port}",
    }


def running(params: Params) -> list[Service] | None:
    """The services `up` started for this workspace, if every one is still alive."""
    services = _read_state(params)
    if services and all(_alive(s) for s in services):
        return services
    return None


def up(params: Params, params_path: Path, echo: Any = print) -> dict[str, str]:
    """Start what is not running; returns the UI URLs. Safe to call twice."""
    found = running(params)
    if found is not None:
        echo("already running: " + ", ".join(f"{s.name} (pid {s.pid})" for s in found))
        return urls(params)
    stale = _read_state(params)
    if stale:  # one of them died: stop the rest, then start all three afresh
        echo("some services had stopped; restarting all of them")
        _stop(stale)
    config = params.services
    for name, port in (("prefect", config.prefect_port), ("mlflow", config.mlflow_port)):
        _check_port_free(config.host, port, name)
    workspace = params.workspace.path
    logs = workspace / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    links = urls(params)
    env = {**os.environ, **QUIET, "PREFECT_HOME": str(workspace / "prefect")}
    for name in ("PREFECT_API_URL", "PREFECT_PROFILE"):
        env.pop(name, None)
    started: list[Service] = []
    try:
        prefect_env = {
            **env,
            "PREFECT_SERVER_API_HOST": config.host,
            "PREFECT_SERVER_API_PORT": str(config.prefect_port),
            "PREFECT_UI_API_URL": f"{links['prefect']}/api",  # the UI's browser calls
        }
        prefect = _start(
            "prefect",
            [
                _tool("prefect"),
                "server",
                "start",
                "--host",
                config.host,
                "--port",
                str(config.prefect_port),
            ],
            prefect_env,
            logs,
            workspace,
        )
        prefect.url, prefect.port = links["prefect"], config.prefect_port
        started.append(prefect)
        mlflow = _start("mlflow", _mlflow_command(params), env, logs, workspace)
        mlflow.url, mlflow.port = links["mlflow"], config.mlflow_port
        started.append(mlflow)
        _write_state(params, started)
        _wait(prefect, f"{links['prefect']}/api/health", config.start_timeout_s)
        echo(f"Prefect UI  {links['prefect']}")
        _wait(mlflow, f"{links['mlflow']}/health", config.start_timeout_s)
        echo(f"MLflow UI   {links['mlflow']}")
        serving_env = {**env, "PREFECT_API_URL": f"{links['prefect']}/api"}
        serving = _start(
            "deployments",
            [sys.executable, "-m", "flows.serve", "--params", str(params_path.resolve())],
            serving_env,
            logs,
            params_path.resolve().parent,
        )
        started.append(serving)
        _write_state(params, started)
        expected = deployments(params)
        _wait_for_deployments(serving, expected, f"{links['prefect']}/api", config.start_timeout_s)
        echo(f"deployments {', '.join(d.split('/')[1] for d in expected)} (pid {serving.pid})")
    except BaseException:
        _stop(started)
        _state_path(params).unlink(missing_ok=True)
        raise
    return links


def down(params: Params, echo: Any = print) -> list[Service]:
    """Stop what `up` started for this workspace; returns what was stopped."""
    services = _read_state(params)
    if not services:
        echo("nothing to stop: `ragtune up` has not started anything for this workspace")
        return []
    stopped = _stop(services)
    _state_path(params).unlink(missing_ok=True)
    for service in services:
        if service.port is not None and not _port_free(params.services.host, service.port):
            raise ServiceError(
                f"port {service.port} ({service.name}) is still in use after `down`; "
                f"see `lsof -i :{service.port}`"
            )
    for service in stopped:
        echo(f"stopped {service.name} (pid {service.pid})")
    if not stopped:
        echo("nothing was running any more; removed the stale record of `ragtune up`")
    return services


# -- processes -----------------------------------------------------------------------------


def _tool(name: str) -> str:
    """A console script of this environment (next to its python), else from PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.is_file() else name


def _mlflow_command(params: Params) -> list[str]:
    location = params.artifact_location() or str(params.workspace.path / "mlartifacts")
    if "://" not in location:
        Path(location).mkdir(parents=True, exist_ok=True)
        location = Path(location).resolve().as_uri()
    return [
        _tool("mlflow"),
        "server",
        "--backend-store-uri",
        params.tracking_uri(),
        "--default-artifact-root",
        location,
        "--host",
        params.services.host,
        "--port",
        str(params.services.mlflow_port),
        "--workers",
        "1",
    ]


def _start(name: str, command: list[str], env: dict[str, str], logs: Path, cwd: Path) -> Service:
    import psutil

    log = logs / f"{name}.log"
    with log.open("ab") as handle:
        handle.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n".encode())
        handle.flush()
        try:
            process = subprocess.Popen(
                command,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                start_new_session=True,  # its own process group: `down` stops its children too
            )
        except FileNotFoundError:
            raise ServiceError(
                f"cannot start {name}: {command[0]} not found; reinstall ragtune (`make install`)"
            ) from None
    return Service(name, process.pid, psutil.Process(process.pid).create_time(), str(log))


def _alive(service: Service) -> bool:
    import psutil

    try:
        process = psutil.Process(service.pid)
        return (
            abs(process.create_time() - service.started) < 1.0
            and process.status() != psutil.STATUS_ZOMBIE
        )
    except psutil.NoSuchProcess:
        return False


def _stop(services: list[Service], timeout_s: float = 20.0) -> list[Service]:
    """SIGTERM each live service's process group, SIGKILL what is left after the timeout."""
    import psutil

    stopped = []
    for service in reversed(services):  # deployments first, the servers last
        if not _alive(service):
            continue
        group = [psutil.Process(service.pid)]
        with _ignore_gone():
            group += group[0].children(recursive=True)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with _ignore_gone():
                os.killpg(service.pid, sig)
            for process in group:  # children that left the group
                with _ignore_gone():
                    process.send_signal(sig)
            _, alive = psutil.wait_procs(group, timeout=timeout_s if sig == signal.SIGTERM else 5)
            if not alive:
                break
        with _ignore_gone():
            os.waitpid(service.pid, os.WNOHANG)  # reap it when this process is its parent
        stopped.append(service)
    return stopped


class _ignore_gone:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, *_: Any) -> bool:
        import psutil

        return kind is not None and issubclass(
            kind, ProcessLookupError | ChildProcessError | psutil.NoSuchProcess
        )


# -- readiness -----------------------------------------------------------------------------


def _wait(service: Service, url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(service):
            raise ServiceError(
                f"{service.name} exited while starting; last lines of {service.log}:\n"
                + _tail(service.log)
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise ServiceError(
        f"{service.name} did not answer at {url} within {timeout_s:.0f} s "
        f"(services.start_timeout_s); see {service.log}"
    )


def _wait_for_deployments(
    service: Service, expected: tuple[str, ...], api: str, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    missing: list[str] = list(expected)
    while time.monotonic() < deadline:
        if not _alive(service):
            raise ServiceError(
                f"the deployments process exited while starting; last lines of {service.log}:\n"
                + _tail(service.log)
            )
        missing = [d for d in expected if not _deployment_exists(api, d)]
        if not missing and "Your deployments are being served" in _tail(service.log, 200):
            return
        time.sleep(1.0)
    raise ServiceError(
        f"deployments {', '.join(missing) or '(all registered)'} not served within "
        f"{timeout_s:.0f} s (services.start_timeout_s); see {service.log}"
    )


def _deployment_exists(api: str, name: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api}/deployments/name/{name}", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: str, lines: int = 15) -> str:
    try:
        text = Path(path).read_text("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# -- ports and state -----------------------------------------------------------------------


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _check_port_free(host: str, port: int, name: str) -> None:
    if not _port_free(host, port):
        raise ServiceError(
            f"port {port} on {host} ({name}) is in use by another program; stop it or set "
            f"services.{name}_port in params.yaml"
        )


def _state_path(params: Params) -> Path:
    return params.workspace.path / STATE_FILE


def _read_state(params: Params) -> list[Service]:
    path = _state_path(params)
    if not path.is_file():
        return []
    try:
        return [Service(**entry) for entry in json.loads(path.read_text())["services"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ServiceError(
            f"{path} is unreadable ({exc}); stop the processes it named by hand, then delete it"
        ) from None


def _write_state(params: Params, services: list[Service]) -> None:
    path = _state_path(params)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"services": [asdict(s) for s in services]}, indent=2))
    temporary.replace(path)
