"""What the agent takes from Python 3.11 and later, also on 3.10 (Ubuntu 22.04's python3).

The agent runs on the classroom mini-PC's own python3 (3.10 on Ubuntu 22.04, 3.11 on
Debian 12, 3.12 on Ubuntu 24.04), so agent modules import these names from here instead
of from the standard library; the fleet keeps requiring 3.11 and uses the standard ones.
"""

from __future__ import annotations

import sys
from datetime import timezone
from enum import Enum

__all__ = ["UTC", "StrEnum", "tomllib"]

# datetime.UTC (3.11) is this very object under another name.
UTC = timezone.utc

if sys.version_info >= (3, 11):
    from enum import StrEnum

    import tomllib
else:
    import tomli as tomllib

    class StrEnum(str, Enum):
        """enum.StrEnum as 3.11 has it: members are str, and str() gives the value."""

        def __str__(self) -> str:
            return str(self.value)
