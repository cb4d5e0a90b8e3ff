"""Run every benchmark: python -m bench [name ...]."""

from __future__ import annotations

import sys

from bench import footprint

BENCHES = {"footprint": footprint.run}


def main(argv: list[str]) -> None:
    names = argv or list(BENCHES)
    for name in names:
        BENCHES[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
