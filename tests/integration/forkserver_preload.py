"""Imported once by the test forkserver, so each killed-and-restarted sync process
starts in about a second instead of re-importing torch and friends.

The forkserver only imports; it never opens a table, so LanceDB's idle background loop
is all there is to reset after fork, and its warning about forks is silenced here.
"""

import warnings

warnings.filterwarnings("ignore", message="lancedb fork support is experimental")

import lancedb  # noqa: E402,F401
import sentence_transformers  # noqa: E402,F401

import ragtune.adapters.index.lance  # noqa: E402
import ragtune.cli  # noqa: E402
import ragtune.sync  # noqa: E402,F401
