"""`python -m ui.serve_check ADDRESS`: refuse (exit 2, with how to fix it) to serve MNIST Lab off loopback
without sign-in. `make run` calls it before starting Streamlit; the app checks the same at every page run."""

from __future__ import annotations

import sys

from ui.auth import exposure_problem


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 when serving on the given address is fine, 2 (and the reason on stderr) when it is not."""
    args = sys.argv[1:] if argv is None else argv
    problem = exposure_problem(args[0] if args else None)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
