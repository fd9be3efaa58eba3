"""One temporary Prefect server for every flow test in this package.

Starting `prefect_test_harness` costs seconds (a server subprocess and its database
migrations), so the flow tests share one, stopped after the package's last test. What a
test reads back is its own: artifacts and task runs filtered by its flow run id, or a
state only a run in progress can hold (a task awaiting its retry).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="package")
def prefect_server() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
