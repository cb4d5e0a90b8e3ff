"""The layering the README promises, read from the source: the fleet imports nothing of
the agent but its wire contract (``agent.contract``), and the agent nothing of the fleet.
Imports inside functions count too: a lazy import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported(package: str, root: Path = ROOT) -> list[tuple[str, int, str]]:
    """Every (file, line, module) imported by ``package``'s modules."""
    found = []
    for path in sorted((root / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found += [(str(path.relative_to(root)), node.lineno, name) for name in names]
    return found


def _is(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def crossing(root: Path = ROOT) -> list[tuple[str, int, str]]:
    return [(f, line, m) for f, line, m in imported("fleet", root)
            if _is(m, "agent") and not _is(m, "agent.contract")]


def test_the_fleet_imports_only_the_agents_contract() -> None:
    assert crossing() == []


def test_the_agent_never_imports_the_fleet() -> None:
    assert [(f, line, m) for f, line, m in imported("agent") if _is(m, "fleet")] == []


def test_the_scan_sees_every_form_of_a_crossing(tmp_path: Path) -> None:
    (tmp_path / "fleet" / "sub").mkdir(parents=True)
    (tmp_path / "fleet" / "sub" / "x.py").write_text(
        "from agent.contract import Kind\n"
        "from agent.contract.model import Finding\n"
        "import agent.app\n"
        "def lazy() -> None:\n"
        "    from agent.settings import section\n"
        "from agentless import y\n")
    assert crossing(tmp_path) == [("fleet/sub/x.py", 3, "agent.app"),
                                  ("fleet/sub/x.py", 5, "agent.settings")]
