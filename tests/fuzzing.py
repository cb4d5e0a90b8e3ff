"""One budget for every hypothesis-based fuzz test.

The suite runs each fuzz test at a small budget so it stays quick; ``make fuzz`` raises
``SYNCCLASS_FUZZ_EXAMPLES`` and runs only the tests marked ``fuzz``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

__all__ = ["FUZZ_EXAMPLES", "fuzz_settings"]

FUZZ_EXAMPLES = int(os.environ.get("SYNCCLASS_FUZZ_EXAMPLES", "50"))

fuzz_settings = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
