"""File provisioning and `grafana push` put the same data source and folder into Grafana,
and the dashboards reference that data source; the fleet runs without grafana-client."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from fleet.grafana.model import (
    DASHBOARDS_DIR,
    DATASOURCE_UID,
    FOLDER_TITLE,
    FOLDER_UID,
    InfluxSource,
    datasource_refs,
    load_dashboards,
    point_at,
)

ROOT = Path(__file__).parent.parent
PROVISIONING = ROOT / "provisioning" / "grafana"


def test_provisioned_datasource_is_the_pushed_one() -> None:
    [provisioned] = yaml.safe_load((PROVISIONING / "datasources" / "syncclass.yaml")
                                   .read_text())["datasources"]
    pushed = InfluxSource().model()
    assert {k: provisioned[k] for k in pushed} == pushed


def test_provisioned_folder_is_the_pushed_one() -> None:
    [provider] = yaml.safe_load((PROVISIONING / "dashboards" / "syncclass.yaml")
                                .read_text())["providers"]
    assert (provider["folder"], provider["folderUid"]) == (FOLDER_TITLE, FOLDER_UID)


def test_every_dashboard_reference_is_the_syncclass_datasource() -> None:
    dashboards = load_dashboards(DASHBOARDS_DIR)
    assert [p.stem for p in sorted(DASHBOARDS_DIR.glob("*.json"))] == \
        [d["uid"] for d in dashboards]  # the file name says which uid it keeps
    for dashboard in dashboards:
        refs = datasource_refs(dashboard)
        assert len(refs) == len(dashboard["panels"]) + len(dashboard["templating"]["list"])
        assert all(ref == {"type": "influxdb", "uid": DATASOURCE_UID} for ref in refs)
        moved = datasource_refs(point_at(dashboard, "county-uid"))
        assert all(ref == {"type": "influxdb", "uid": "county-uid"} for ref in moved)
        assert datasource_refs(dashboard) == refs  # the loaded dashboard is not changed


def test_fleet_runs_without_grafana_client() -> None:
    """With grafana-client unimportable the fleet and its CLI load, and the push names the
    missing extra in one line."""
    code = ("import sys; sys.modules['grafana_client'] = None\n"
            "import fleet.app\n"
            "from fleet.cli import main\n"
            "sys.exit(main(['grafana', 'push', '--url', 'http://127.0.0.1:9', '--token', 't']))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert "pip install 'syncclass[grafana]'" in line and "未安装 grafana-client" in line
