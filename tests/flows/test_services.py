"""`ragtune up` / `ragtune down` as a user runs them, and the UIs they bring up, driven
in headless Chromium (Debian's package, installed by `make test`).

One `up` serves the module: the Prefect server, the MLflow server and the deployments,
for a small training project on a tiny model. The browser test starts a custom retrain
from the Prefect UI and finds its run and model version in the MLflow UI; screenshots
are kept under test-artifacts/browser/. One test stops everything and checks that no
process and no port is left behind; a test that runs after it starts the services again.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.integration.test_data_docs import CHROMIUM, CHROMIUM_ARGS
from tests.training_support import ROOT, insert_rows, make_project, qa_rows

RAGTUNE = str(Path(sys.executable).with_name("ragtune"))
SHOTS = ROOT / "test-artifacts" / "browser"
TIMEOUT_MS = 120_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ragtune(*args: str, params: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    # the served deployments look for runs to start every second, not every 10 (Prefect's
    # default): a run the UI or the trigger creates starts without idling
    env["PREFECT_RUNNER_POLL_FREQUENCY"] = "1"
    return subprocess.run(
        [RAGTUNE, *args, "--params", str(params)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def post_json(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def project(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    params = make_project(
        tmp_path_factory.mktemp("up") / "p",
        tiny_base,
        extra=(
            f"services:\n  prefect_port: {free_port()}\n  mlflow_port: {free_port()}\n"
            "retrain:\n  check_interval_s: 3600\n"
        ),
    )
    started = ragtune("up", params=params)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield params
    finally:
        ragtune("down", params=params)


@pytest.fixture
def running(project: Path) -> Path:
    """The module's services, up: started again when an earlier test stopped them."""
    if not (project.parent / ".ragtune" / "services.json").exists():
        started = ragtune("up", params=project)
        assert started.returncode == 0, started.stdout + started.stderr
    return project


def recorded(params: Path) -> list[dict[str, Any]]:
    state = params.parent / ".ragtune" / "services.json"
    return list(json.loads(state.read_text())["services"])


def ui(params: Path) -> dict[str, str]:
    status = ragtune("status", "--json", params=params)
    assert status.returncode == 0, status.stderr
    return dict(json.loads(status.stdout)["ui"])


def test_up_serves_both_uis_and_the_deployments(running: Path) -> None:
    links = ui(running)
    assert get_json(f"{links['prefect']}/api/health") is True
    with urllib.request.urlopen(f"{links['mlflow']}/health", timeout=10) as response:
        assert response.read() == b"OK"
    names = {
        d["name"] for d in post_json(f"{links['prefect']}/api/deployments/filter", {"limit": 50})
    }
    assert names == {"refresh-index", "retrain", "retrain-trigger", "evaluate"}
    services = recorded(running)
    assert [s["name"] for s in services] == ["prefect", "mlflow", "deployments"]
    assert all(psutil.pid_exists(s["pid"]) for s in services)
    for service in services:
        assert Path(service["log"]).is_file()


def test_a_second_up_reports_what_runs_and_starts_nothing(running: Path) -> None:
    before = recorded(running)
    again = ragtune("up", params=running)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    assert recorded(running) == before


def test_a_busy_port_is_a_clear_error(tmp_path: Path, tiny_base: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        params = make_project(
            tmp_path / "p", tiny_base, extra=f"services:\n  prefect_port: {port}\n"
        )
        refused = ragtune("up", params=params, timeout=60)
    assert refused.returncode == 8
    assert f"port {port}" in refused.stderr and "services.prefect_port" in refused.stderr
    assert refused.stderr.count("\n") == 1  # one line
    assert not (params.parent / ".ragtune" / "services.json").exists()


def test_down_with_a_stale_record_touches_nothing(tmp_path: Path) -> None:
    """A recorded PID now used by another process (start time differs) is never signalled."""
    params = tmp_path / "params.yaml"
    params.write_text("sources: {}\n")
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        state = tmp_path / ".ragtune" / "services.json"
        state.parent.mkdir()
        entry = {"name": "prefect", "pid": bystander.pid, "started": 1.0, "log": "x"}
        state.write_text(json.dumps({"services": [entry]}))
        stopped = ragtune("down", params=params, timeout=60)
        assert stopped.returncode == 0, stopped.stderr
        assert "stale record" in stopped.stdout
        assert bystander.poll() is None  # still running
        assert not state.exists()
    finally:
        bystander.kill()


def test_without_a_training_section_only_refresh_index_is_served(tmp_path: Path) -> None:
    from flows.serve import build_deployments
    from ragtune.config import load_params
    from ragtune.services import deployments

    params = tmp_path / "params.yaml"
    params.write_text("sources: {}\n")
    assert [d.name for d in build_deployments(params)] == ["refresh-index"]
    assert deployments(load_params(params)) == ("refresh_index/refresh-index",)


def test_retrain_from_the_prefect_ui_shows_up_in_the_mlflow_ui(running: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed; `make test` installs it")
    from playwright.sync_api import expect, sync_playwright

    links = ui(running)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        try:
            flow_run_url = start_custom_retrain(page, links["prefect"], expect)
            run_link = wait_for_completed(page, flow_run_url, links["prefect"])
            check_mlflow(page, links["mlflow"], run_link, expect)
        except BaseException:
            page.screenshot(path=str(SHOTS / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()


def start_custom_retrain(page: Any, prefect: str, expect: Any) -> str:
    """Deployments -> retrain -> Run -> Custom run -> max_steps = 2 -> Submit -> View run."""
    page.goto(f"{prefect}/deployments")
    link = page.locator("a.deployment-list__name", has_text="retrain").filter(
        has_not_text="trigger"
    )
    expect(link).to_be_visible()
    page.screenshot(path=str(SHOTS / "1-prefect-deployments.png"), full_page=True)
    link.click()
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run").click()
    page.wait_for_url("**/run?**")
    field = page.locator("div.p-label", has=page.get_by_text("max_steps (Optional)", exact=True))
    field.get_by_role("button", name="int", exact=True).click()
    field.locator("input").fill("2")
    page.screenshot(path=str(SHOTS / "2-prefect-custom-run.png"), full_page=True)
    page.get_by_role("button", name="Submit", exact=True).click()
    expect(page.get_by_text("scheduled to start").first).to_be_visible()
    deployment = get_json(f"{prefect}/api/deployments/name/retrain/retrain")
    runs = post_json(
        f"{prefect}/api/flow_runs/filter",
        {"deployments": {"id": {"any_": [deployment["id"]]}}, "limit": 20},
    )
    # the run the form created: the scheduled cron runs carry no max_steps
    (created,) = [r for r in runs if r["parameters"].get("max_steps") == 2]
    return f"{prefect}/runs/flow-run/{created['id']}"


def wait_for_completed(page: Any, flow_run_url: str, prefect: str) -> str:
    """Wait for the flow run to finish; returns the MLflow run link it left as an artifact."""
    flow_run_id = flow_run_url.rstrip("/").split("/")[-1].split("?")[0]
    deadline = time.monotonic() + 300
    while True:
        run = get_json(f"{prefect}/api/flow_runs/{flow_run_id}")
        state = run["state"]["type"]
        if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert run["parameters"]["max_steps"] == 2
    page.goto(flow_run_url)
    page.get_by_text("Completed").first.wait_for()
    page.get_by_text("Artifacts", exact=True).first.click()
    page.screenshot(path=str(SHOTS / "3-prefect-flow-run.png"), full_page=True)
    assert state == "COMPLETED", f"the retrain flow run ended {state}"
    artifacts = post_json(
        f"{prefect}/api/artifacts/filter",
        {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}},
    )
    progress = [a["data"] for a in artifacts if a["type"] == "progress"]
    assert progress == [100.0]  # the pipeline's stages, done
    (link,) = [a["data"] for a in artifacts if a["type"] == "markdown" and "/runs/" in a["data"]]
    return str(link.split("](")[1].rstrip(")"))


def check_mlflow(page: Any, mlflow: str, run_link: str, expect: Any) -> None:
    """The retrain run (through the Prefect artifact's link) and its model version."""
    assert run_link.startswith(mlflow)
    run_id = run_link.rsplit("/runs/", 1)[1]
    page.goto(run_link)
    expect(page.get_by_text("retrain").first).to_be_visible()
    expect(page.get_by_text(run_id).first).to_be_visible()
    page.screenshot(path=str(SHOTS / "4-mlflow-run.png"), full_page=True)
    api = f"{mlflow}/ajax-api/2.0/mlflow"
    run = get_json(f"{api}/runs/get?run_id={run_id}")["run"]
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    version = tags["ragtune.model_version"]  # the version this retrain registered
    registered = get_json(f"{api}/model-versions/get?name=ragtune-generator&version={version}")
    trained_by = registered["model_version"]["run_id"]  # the retrain's nested train run
    child = get_json(f"{api}/runs/get?run_id={trained_by}")["run"]
    assert {"key": "mlflow.parentRunId", "value": run_id} in child["data"]["tags"]
    page.goto(f"{mlflow}/#/models/ragtune-generator")
    expect(page.get_by_text(f"Version {version}").first).to_be_visible()
    page.screenshot(path=str(SHOTS / "5-mlflow-model.png"), full_page=True)


def test_the_served_trigger_starts_a_run_of_the_retrain_deployment(running: Path) -> None:
    """So that on a cluster a triggered retrain lands on the retrain deployment's pool."""
    api = ui(running)["prefect"] + "/api"
    insert_rows(running.parent / "labels.db", qa_rows(1000, 60))  # > retrain.min_new_rows
    trigger = get_json(f"{api}/deployments/name/retrain_trigger/retrain-trigger")
    run = post_json(f"{api}/deployments/{trigger['id']}/create_flow_run", {})
    deadline = time.monotonic() + 120
    while (state := get_json(f"{api}/flow_runs/{run['id']}")["state"]["type"]) not in (
        "COMPLETED",
        "FAILED",
        "CRASHED",
    ) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert state == "COMPLETED"
    retrain = get_json(f"{api}/deployments/name/retrain/retrain")
    runs = post_json(f"{api}/flow_runs/filter", {"deployments": {"id": {"any_": [retrain["id"]]}}})
    (started,) = [r for r in runs if "new labelled rows" in str(r["parameters"].get("trigger"))]
    # not needed to run here: cancel it (the serving process stops it if it has started)
    post_json(
        f"{api}/flow_runs/{started['id']}/set_state",
        {"state": {"type": "CANCELLED", "name": "Cancelled"}, "force": True},
    )


def test_down_stops_every_process_and_frees_every_port(running: Path) -> None:
    services = recorded(running)
    family = []
    for service in services:
        process = psutil.Process(service["pid"])
        family += [process, *process.children(recursive=True)]
    stopped = ragtune("down", params=running)
    assert stopped.returncode == 0, stopped.stderr
    assert not [p.pid for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for service in services:
        if service["port"] is not None:
            with socket.socket() as probe:  # a server can listen there again
                # (closed client connections may linger in TIME_WAIT; servers reuse past them)
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(("127.0.0.1", service["port"]))
    listening = {
        c.laddr.port for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN
    }
    assert not listening & {s["port"] for s in services}
    assert not (running.parent / ".ragtune" / "services.json").exists()
    status = ragtune("status", "--json", params=running)
    assert json.loads(status.stdout)["ui"] is None
    again = ragtune("down", params=running)
    assert again.returncode == 0 and "nothing to stop" in again.stdout
