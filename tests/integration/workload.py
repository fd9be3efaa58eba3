"""A randomized write workload: inserts, updates, soft and hard deletes, re-inserts.

Keys come from a small space so that operations collide; some bodies are long enough to
make several chunks (and later shrink), some rows lose all their text, some transactions
touch several rows at once.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from dataclasses import dataclass, field

import sqlalchemy as sa

WORDS = [
    "index",
    "vector",
    "change",
    "capture",
    "trigger",
    "commit",
    "replica",
    "shard",
    "tenant",
    "query",
    "document",
    "chunk",
    "embed",
    "latency",
    "fresh",
    "stale",
    "cursor",
    "watermark",
    "queue",
    "durable",
]


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass
class Workload:
    engine: sa.Engine
    table: sa.Table
    seed: int
    keys: int = 300
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def body(self) -> str:
        roll = self.rng.random()
        if roll < 0.05:
            return ""
        paragraphs = 12 if roll > 0.92 else 1
        return "\n\n".join(
            " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(8, 60)))
            for _ in range(paragraphs)
        )

    def values(self, key: int) -> dict[str, object]:
        title = "" if self.rng.random() < 0.03 else f"Doc {key} v{self.rng.randint(0, 9999)}"
        return {
            "title": title,
            "body": self.body(),
            "section": self.rng.choice(["a", "b", "c"]),
            "tenant": self.rng.choice([None, None, None, "acme"]),
            "deleted": 0,
            "updated_at": now(),
        }

    def operation(self, connection: sa.Connection) -> str:
        t = self.table
        key = self.rng.randrange(self.keys)
        exists = connection.execute(sa.select(t.c.id).where(t.c.id == key)).first() is not None
        roll = self.rng.random()
        if not exists:
            connection.execute(t.insert().values(id=key, **self.values(key)))
            return "insert"
        if roll < 0.55:
            connection.execute(t.update().where(t.c.id == key).values(**self.values(key)))
            return "update"
        if roll < 0.7:
            connection.execute(t.update().where(t.c.id == key).values(deleted=1, updated_at=now()))
            return "soft_delete"
        if roll < 0.8:
            connection.execute(t.update().where(t.c.id == key).values(deleted=0, updated_at=now()))
            return "undelete"
        connection.execute(t.delete().where(t.c.id == key))
        return "hard_delete"

    def run(
        self, operations: int, pause_s: float = 0.0, stop: threading.Event | None = None
    ) -> None:
        done = 0
        while done < operations and not (stop and stop.is_set()):
            size = 1 if self.rng.random() < 0.8 else self.rng.randint(2, 5)
            for attempt in range(5):
                try:
                    with self.engine.begin() as connection:
                        kinds = [self.operation(connection) for _ in range(size)]
                    break
                except sa.exc.OperationalError:  # a deadlock or busy database: retry
                    time.sleep(0.05 * (attempt + 1))
            else:
                raise RuntimeError("workload transaction kept failing")
            for kind in kinds:
                self.counts[kind] = self.counts.get(kind, 0) + 1
            done += size
            if pause_s:
                time.sleep(self.rng.uniform(0, pause_s))
