"""The ``workbench`` command: :func:`main` parses the arguments (:mod:`workbench.cli.parser`), runs
the verb (one module per family of verbs; each calls the library and prints) and turns errors into
exit codes. The work lives in the library.

Exit codes: 0 success; 1 a check ran and found problems (verify, validate); 2 bad input, a
refused operation or a usage error (one line on stderr naming the file, no traceback); 3 a write
stopped part-way (finished parts are kept: run the same command again to resume); 130 interrupted.
"""
from __future__ import annotations

import sys

from workbench.cli.common import EXIT_ERROR, EXIT_INCOMPLETE, EXIT_OK, EXIT_PROBLEMS, REMOVED
from workbench.cli.parser import _version, build_parser  # noqa: F401 - _version: `workbench --version`'s source
from workbench.errors import IncompleteError, WorkbenchError

__all__ = ["EXIT_ERROR", "EXIT_INCOMPLETE", "EXIT_OK", "EXIT_PROBLEMS", "REMOVED", "build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            code = _main(argv)
        except SystemExit:  # argparse: --help, --version, a usage error; their text is flushed here
            _flush_stdout()
            raise
        _flush_stdout()  # a closed pipe shows here, not as a traceback at interpreter exit
        return code
    except BrokenPipeError:
        if not _stdout_closed():  # another pipe broke: an error like any other
            print("error: a pipe closed while writing (broken pipe)", file=sys.stderr)
            return EXIT_ERROR
        _stdout_to_devnull()  # `workbench ... | head`: the reader has all it wanted; not an error
        return EXIT_OK


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except IncompleteError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return EXIT_INCOMPLETE
    except WorkbenchError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        raise
    except OSError as exc:
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _flush_stdout() -> None:
    sys.stdout.flush()


def _stdout_closed() -> bool:
    """Whether stdout is a pipe (or socket) whose reader has gone."""
    import select

    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no file descriptor (captured in-process): assume it is
        return True


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null, so that what is still buffered is dropped quietly at exit (the
    standard recipe for SIGPIPE-free pipes: https://docs.python.org/3/library/signal.html#note-on-sigpipe)."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
