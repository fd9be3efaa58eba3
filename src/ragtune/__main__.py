"""`python -m ragtune` is the `ragtune` command."""

from ragtune.cli import main

main()
