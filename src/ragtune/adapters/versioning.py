"""DVC: the project the pipeline runs in, `dvc repro`, and the remote data is pushed to.

DVC runs as a subprocess (its CLI is its stable interface), in the folder that holds
`dvc.yaml` and `params.yaml`, with the venv's `python` first on PATH so each stage's
`python pipelines/<stage>.py` runs the installed ragtune. Analytics are off.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ragtune.errors import RagtuneError

REMOTE = "ragtune"


class PipelineError(RagtuneError):
    """A pipeline stage failed; the message is the stage's own last error line."""


def _dvc() -> str:
    beside = Path(sys.executable).with_name("dvc")
    found = str(beside) if beside.is_file() else shutil.which("dvc")
    if not found:
        raise RagtuneError("dvc is not installed; run `make install` (pip install dvc)")
    return found


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    env.update(extra or {})
    return env


def run_dvc(root: Path, args: Sequence[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [_dvc(), *args],
        cwd=root,
        env=env or environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise PipelineError(f"dvc {' '.join(args)} failed: {last_error(done.stdout + done.stderr)}")
    return done.stdout


def last_error(output: str) -> str:
    """The most telling line of a failed run: a stage's `ragtune:` line, else DVC's ERROR."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for prefix in ("ragtune: ", "ERROR: "):
        found = [line for line in lines if line.startswith(prefix)]
        if found:
            return found[0].removeprefix("ragtune: ")
    return lines[-1] if lines else "no output"


def ensure_project(root: Path, remote: str) -> None:
    """`dvc init` once (without git where there is none), analytics off, a local remote."""
    if not (root / "dvc.yaml").is_file():
        raise RagtuneError(
            f"no dvc.yaml in {root}; run `ragtune train` in a ragtune checkout (or copy "
            "dvc.yaml and pipelines/ next to your params.yaml)"
        )
    if not (root / ".dvc").is_dir():
        scm = [] if _inside_git(root) else ["--no-scm"]
        run_dvc(root, ["init", "-q", *scm])
    run_dvc(root, ["config", "core.analytics", "false"])
    if "://" not in remote:
        Path(remote).mkdir(parents=True, exist_ok=True)
    run_dvc(root, ["remote", "add", "--local", "--force", "--default", REMOTE, remote])


def _inside_git(root: Path) -> bool:
    done = subprocess.run(
        ["git", "rev-parse", "--is-inside-work-tree"], cwd=root, capture_output=True, check=False
    )
    return done.returncode == 0


def git_commit(root: Path) -> str:
    """HEAD, with `-dirty` when the tree has changes; `none` outside git."""
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False
    )
    if head.returncode != 0:
        return "none"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def file_md5(path: Path) -> str:
    """The hash DVC gives a file (its MD5), i.e. the data version of a snapshot."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
