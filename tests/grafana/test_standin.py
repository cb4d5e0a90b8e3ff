"""The stand-in refuses what Grafana's documentation says Grafana refuses, so a push that
made a wrong call could not pass against it."""

from __future__ import annotations

from typing import Any

import pytest
from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaUnauthorizedError

from tests.grafana.conftest import ADMIN, VIEWER
from tests.grafana.grafana_standin import StandinGrafana


def _api(grafana: StandinGrafana, token: str = ADMIN) -> Any:
    return GrafanaApi.from_url(grafana.url, credential=token)


def _status(call: Any, *args: Any) -> tuple[int, Any]:
    with pytest.raises(GrafanaClientError) as refused:
        call(*args)
    return refused.value.status_code, refused.value.response


def test_auth(grafana: StandinGrafana) -> None:
    with pytest.raises(GrafanaUnauthorizedError):
        _api(grafana, "nope").folder.get_all_folders()
    viewer = _api(grafana, VIEWER)
    assert viewer.folder.get_all_folders() == []
    assert _status(viewer.folder.create_folder, "x")[0] == 403
    assert _status(viewer.datasource.get_datasource_by_name, "x")[0] == 403


def test_unknown_uids_are_404(grafana: StandinGrafana) -> None:
    api = _api(grafana)
    assert _status(api.dashboard.get_dashboard, "nope")[0] == 404
    assert _status(api.folder.get_folder, "nope")[0] == 404
    assert _status(api.datasource.get_datasource_by_uid, "nope")[0] == 404
    assert _status(api.datasource.update_datasource_by_uid, "nope",
                   {"name": "n", "type": "influxdb"})[0] == 404


def test_conflicts(grafana: StandinGrafana) -> None:
    api = _api(grafana)
    api.folder.create_folder("F", uid="f")
    assert _status(api.folder.create_folder, "F2", "f")[0] == 409
    assert _status(api.folder.create_folder, "F", "g")[0] == 409
    assert _status(api.folder.update_folder, "f", "G", 7)[0] == 412
    api.datasource.create_datasource({"name": "d", "type": "influxdb"})
    assert _status(api.datasource.create_datasource, {"name": "d", "type": "influxdb"})[0] == 409
    ds = api.datasource.get_datasource_by_name("d")
    stale = {"name": "d", "type": "influxdb", "version": ds["version"] + 1}
    assert _status(api.datasource.update_datasource_by_uid, ds["uid"], stale)[0] == 409
    grafana.seed_datasource("ro", uid="ro", read_only=True)
    assert _status(api.datasource.update_datasource_by_uid, "ro",
                   {"name": "ro", "type": "influxdb"})[0] == 403


def test_dashboard_save_rules(grafana: StandinGrafana) -> None:
    api = _api(grafana)
    api.folder.create_folder("F", uid="f")
    first = {"dashboard": {"uid": "a", "title": "A", "version": 0}, "folderUid": "f"}
    assert api.dashboard.update_dashboard(first)["version"] == 1
    status, body = _status(api.dashboard.update_dashboard, first)  # stale version 0
    assert (status, body["status"]) == (412, "version-mismatch")
    assert api.dashboard.update_dashboard({**first, "overwrite": True})["version"] == 2
    twin = {"dashboard": {"uid": "b", "title": "A"}, "folderUid": "f"}
    status, body = _status(api.dashboard.update_dashboard, twin)
    assert (status, body["status"]) == (412, "name-exists")
    taken = api.dashboard.update_dashboard({**twin, "overwrite": True})
    assert (taken["uid"], taken["version"]) == ("a", 3)  # Grafana keeps the older uid
    assert _status(api.dashboard.update_dashboard,
                   {"dashboard": {"uid": "c", "title": "C"}, "folderUid": "nope"})[0] == 400
    assert _status(api.dashboard.update_dashboard, {"dashboard": {"uid": "c"}})[0] == 400
    assert _status(api.dashboard.update_dashboard,
                   {"dashboard": {"uid": "x" * 41, "title": "X"}})[0] == 400
