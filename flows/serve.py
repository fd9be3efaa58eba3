"""Serve every ragtune deployment from one process (what `ragtune up` starts).

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.serve --params params.yaml

Deployments: `refresh-index` (interval or continuous, from params) and, when params has a
`training:` section, `retrain` (cron, UI parameters), `retrain-trigger` (the data-volume
check) and `evaluate` (on demand). Flow
runs execute in subprocesses of this one; stopping it stops them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from prefect import serve

from flows import evaluate, refresh_index, retrain
from ragtune.config import load_params


def build_deployments(params_path: str | Path) -> list[Any]:
    """What `ragtune.services.deployments` names: the training deployments only when params
    has a `training:` section."""
    built = [refresh_index.build_deployment(params_path)]
    if load_params(Path(params_path)).training is not None:
        built += [*retrain.build_deployments(params_path), evaluate.build_deployment(params_path)]
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    serve(*build_deployments(args.params), print_starting_message=True)


if __name__ == "__main__":
    main()
