"""The ``workbench`` command: ``main`` parses the arguments and calls the library."""
from workbench.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
