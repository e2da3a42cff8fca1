"""The ``mailgate`` command and ``python -m mailgate``.

``mailgate ingest`` with the daemon running is answered here without
loading the CLI: an MTA's pipe transport starts one process per message, and
that path needs only the standard library (see ingest/pipe.py).
"""

import sys


def main() -> None:
    from mailgate.ingest.pipe import fast_ingest

    code = fast_ingest(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from mailgate.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
