"""Run every benchmark: python -m bench [name ...]."""

from __future__ import annotations

import sys

from bench import fleet_size, footprint, ingest, inventory_load, latency, timetable_import

BENCHES = {
    "footprint": footprint.run,
    "ingest": ingest.run,
    "fleet_size": fleet_size.run,
    "latency": latency.run,
    "import": timetable_import.run,
    "load-inventory": inventory_load.run,
}


def main(argv: list[str]) -> None:
    names = argv or list(BENCHES)
    for name in names:
        BENCHES[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
