"""``python -m agent.contract catalogue``: the reason catalogue as a Markdown table (the
README's copy is this output, between its ``reasons`` markers)."""

from __future__ import annotations

import sys

from agent.contract.catalogue import markdown


def main(argv: list[str]) -> int:
    if argv != ["catalogue"]:
        print("usage: python -m agent.contract catalogue", file=sys.stderr)
        return 2
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
