"""`syncclass-fleet grafana push` with grafana-client against the stand-in Grafana."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fleet.cli import main
from fleet.grafana.model import DASHBOARDS_DIR, datasource_refs
from tests.grafana.conftest import ADMIN, VIEWER
from tests.grafana.grafana_standin import StandinGrafana

DASHBOARDS = {json.loads(p.read_text())["uid"]: json.loads(p.read_text())
              for p in sorted(DASHBOARDS_DIR.glob("*.json"))}


def _push(grafana: StandinGrafana, capsys: pytest.CaptureFixture[str], *extra: str,
          token: str = ADMIN) -> tuple[int, list[str], str]:
    code = main(["grafana", "push", "--url", grafana.url, "--token", token, *extra])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def _refs_resolve(grafana: StandinGrafana) -> None:
    for stored in grafana.state.dashboards.values():
        refs = datasource_refs(stored["dashboard"])
        assert refs, "a dashboard without data source references tests nothing"
        for ref in refs:
            assert ref["uid"] in grafana.state.datasources, ref
            assert grafana.state.datasources[ref["uid"]]["type"] == ref["type"]


def test_first_push_creates_datasource_folder_and_every_dashboard(
        grafana: StandinGrafana, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = _push(grafana, capsys, "--influx-url", "http://influx.county:8086")
    assert (code, err) == (0, "")
    [ds] = grafana.state.datasources.values()
    assert (ds["uid"], ds["name"], ds["type"], ds["url"]) == (
        "syncclass-influxql", "syncclass", "influxdb", "http://influx.county:8086")
    assert ds["jsonData"]["dbName"] == "syncclass"
    assert list(grafana.state.folders) == ["syncclass"]
    assert grafana.state.folders["syncclass"]["title"] == "同步课堂 syncclass"
    assert set(grafana.state.dashboards) == set(DASHBOARDS)
    for uid, stored in grafana.state.dashboards.items():
        assert stored["folderUid"] == "syncclass"
        assert stored["dashboard"]["panels"] == DASHBOARDS[uid]["panels"]
    _refs_resolve(grafana)
    assert len(lines) == 2 + len(DASHBOARDS)
    assert all("已创建 created" in line for line in lines), lines


def test_second_push_changes_nothing(grafana: StandinGrafana,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert _push(grafana, capsys)[0] == 0
    writes = len(grafana.writes())
    versions = {uid: d["version"] for uid, d in grafana.state.dashboards.items()}
    code, lines, _ = _push(grafana, capsys)
    assert code == 0
    assert all("未变 unchanged" in line for line in lines), lines
    assert len(grafana.writes()) == writes  # nothing was written the second time
    assert len(grafana.state.datasources) == 1 and len(grafana.state.folders) == 1
    assert {uid: d["version"] for uid, d in grafana.state.dashboards.items()} == versions


def test_changed_dashboard_is_updated_in_place(grafana: StandinGrafana, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert _push(grafana, capsys)[0] == 0
    uid, dashboard = next(iter(DASHBOARDS.items()))
    changed = tmp_path / "dashboards"
    shutil.copytree(DASHBOARDS_DIR, changed)
    dashboard = {**dashboard, "refresh": "1m"}
    (changed / f"{uid}.json").write_text(json.dumps(dashboard), encoding="utf-8")
    # Someone also saved it in Grafana's editor meanwhile: its version moved on to 2.
    grafana.edit_dashboard(uid, title="edited by hand")
    code, lines, _ = _push(grafana, capsys, "--dashboards", str(changed))
    assert code == 0
    assert any(uid in line and "已更新 updated" in line and "version 3" in line
               for line in lines), lines
    stored = grafana.state.dashboards[uid]
    assert stored["version"] == 3 and stored["folderUid"] == "syncclass"
    assert stored["dashboard"]["refresh"] == "1m"
    assert stored["dashboard"]["title"] == DASHBOARDS[uid]["title"]
    assert set(grafana.state.dashboards) == set(DASHBOARDS)


@pytest.mark.parametrize(("token", "status"), [("wrong-token", "401"), (VIEWER, "403")])
def test_refused_token_is_one_clear_line(grafana: StandinGrafana, token: str, status: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = _push(grafana, capsys, token=token)
    assert code == 1 and lines == []
    [line] = err.splitlines()
    assert status in line and "推送失败" in line and "push failed" in line
    assert "Traceback" not in err
    assert not grafana.state.datasources and not grafana.state.dashboards


def test_unreachable_grafana_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    with StandinGrafana() as gone:
        url = gone.url
    code = main(["grafana", "push", "--url", url, "--token", ADMIN, "--timeout", "3"])
    [line] = capsys.readouterr().err.splitlines()
    assert code == 1
    assert f"无法连接 Grafana {url}" in line and f"cannot reach Grafana at {url}" in line
    assert line.endswith("Connection refused")


class _WebPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        page = b"<html><body>county portal</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def web_page() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WebPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_url_that_is_not_grafana_is_one_clear_line(
        web_page: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["grafana", "push", "--url", web_page, "--token", ADMIN])
    [line] = capsys.readouterr().err.splitlines()
    assert code == 1 and "check --url" in line and "请检查 --url" in line


def test_datasource_of_the_same_name_is_updated_not_duplicated(
        grafana: StandinGrafana, capsys: pytest.CaptureFixture[str]) -> None:
    # A county admin had made "syncclass" by hand: Grafana gave it a uid of its own.
    grafana.seed_datasource("syncclass", uid="handmade01", url="http://old:8086",
                            jsonData={"dbName": "old", "keepMe": 1}, isDefault=True)
    grafana.seed_datasource("other", uid="other01", url="http://other:8086")
    code, lines, _ = _push(grafana, capsys, "--influx-url", "http://influx:8086")
    assert code == 0
    assert "uid handmade01" in lines[0] and "已更新 updated" in lines[0]
    mine = [ds for ds in grafana.state.datasources.values() if ds["name"] == "syncclass"]
    assert [ds["uid"] for ds in mine] == ["handmade01"]
    assert mine[0]["url"] == "http://influx:8086"
    assert mine[0]["isDefault"] is True  # what the push does not manage stays
    assert mine[0]["jsonData"] == {"dbName": "syncclass", "httpMode": "GET",
                                   "timeInterval": "15s", "keepMe": 1}
    assert grafana.state.datasources["other01"]["url"] == "http://other:8086"
    refs = {ref["uid"] for d in grafana.state.dashboards.values()
            for ref in datasource_refs(d["dashboard"])}
    assert refs == {"handmade01"}  # the dashboards follow the data source's uid
    code, lines, _ = _push(grafana, capsys, "--influx-url", "http://influx:8086")
    assert code == 0 and all("未变 unchanged" in line for line in lines), lines


def test_token_goes_to_grafanas_secret_store(grafana: StandinGrafana,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = _push(grafana, capsys, "--influx-token", "s3cret")
    assert code == 0 and not any("s3cret" in line for line in lines)
    [ds] = grafana.state.datasources.values()
    assert ds["jsonData"]["httpHeaderName1"] == "Authorization"
    assert ds["secureJsonFields"] == {"httpHeaderValue1": True}
    assert grafana.state.secrets[ds["uid"]] == {"httpHeaderValue1": "Token s3cret"}
    # Grafana never shows a stored secret, so a given token is written each time.
    code, lines, _ = _push(grafana, capsys, "--influx-token", "n3w")
    assert code == 0 and "已更新 updated" in lines[0]
    assert grafana.state.secrets[ds["uid"]] == {"httpHeaderValue1": "Token n3w"}
    # Without --influx-token the stored one stays.
    code, lines, _ = _push(grafana, capsys)
    assert code == 0 and "未变 unchanged" in lines[0]
    assert grafana.state.secrets[ds["uid"]] == {"httpHeaderValue1": "Token n3w"}


def test_data_source_from_the_fleet_config(grafana: StandinGrafana, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text('[tsdb]\nurl = "http://tsdb.county:8086"\nbucket = "dongtou"\n')
    assert _push(grafana, capsys, "--config", str(config))[0] == 0
    [ds] = grafana.state.datasources.values()
    assert (ds["url"], ds["jsonData"]["dbName"]) == ("http://tsdb.county:8086", "dongtou")


def test_existing_folder_of_that_title_is_used(grafana: StandinGrafana,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    grafana.seed_folder("同步课堂 syncclass", uid="byhand")
    code, lines, _ = _push(grafana, capsys)
    assert code == 0 and "uid byhand" in lines[1]
    assert list(grafana.state.folders) == ["byhand"]
    assert {d["folderUid"] for d in grafana.state.dashboards.values()} == {"byhand"}


def test_provisioned_datasource_is_left_alone(grafana: StandinGrafana,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    grafana.seed_datasource("syncclass", uid="syncclass-influxql", read_only=True,
                            url="http://file:8086", jsonData={"dbName": "syncclass"})
    code, lines, _ = _push(grafana, capsys, "--influx-url", "http://other:8086")
    assert code == 0
    assert "由配置文件管理" in lines[0] and "provisioning file" in lines[0]
    assert grafana.state.datasources["syncclass-influxql"]["url"] == "http://file:8086"
    _refs_resolve(grafana)


def test_unreadable_dashboard_stops_before_anything_is_written(
        grafana: StandinGrafana, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    code, _, err = _push(grafana, capsys, "--dashboards", str(tmp_path))
    assert code == 1 and "broken.json" in err and len(err.splitlines()) == 1
    assert grafana.state.calls == []


def test_renamed_folder_gets_its_title_back(grafana: StandinGrafana,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    grafana.seed_folder("renamed by hand", uid="syncclass")
    code, lines, _ = _push(grafana, capsys)
    assert code == 0 and "已更新 updated" in lines[1]
    assert grafana.state.folders["syncclass"]["title"] == "同步课堂 syncclass"
    assert len(grafana.state.folders) == 1


def test_provisioned_dashboard_is_left_alone(grafana: StandinGrafana,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    uid, dashboard = next(iter(DASHBOARDS.items()))
    grafana.seed_folder("同步课堂 syncclass", uid="syncclass")
    grafana.seed_dashboard({**dashboard, "refresh": "5m"}, "syncclass", provisioned=True)
    code, lines, _ = _push(grafana, capsys)
    assert code == 0
    assert any(uid in line and "provisioned file" in line for line in lines), lines
    assert grafana.state.dashboards[uid]["dashboard"]["refresh"] == "5m"
    assert not [c for c in grafana.writes() if c.path == "/api/dashboards/db"
                and c.body["dashboard"]["uid"] == uid]
