"""``python -m roadx`` runs the command-line interface."""

from roadx.cli import main

main()
