"""Create or update the data source, the folder and the dashboards through Grafana's HTTP API.

Idempotent: everything is looked up by uid first (the data source also by name, the
folder also by title, so that one made by hand is taken over rather than duplicated),
compared with what would be written, and written only when it differs.  Dashboards are
saved with ``overwrite`` into the folder's uid, so an edit made in Grafana meanwhile is
replaced rather than refused with 412 version-mismatch.  Objects that Grafana's own file
provisioning manages are read-only through the API; they are reported and left alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fleet.grafana.model import InfluxSource, point_at

__all__ = ["GrafanaPushError", "Outcome", "push"]

_STATUS = {"created": "已创建", "updated": "已更新", "unchanged": "未变",
           "left": "未改动（由配置文件管理）"}
_KIND = {"data source": "数据源", "folder": "文件夹", "dashboard": "仪表盘"}
_MESSAGE = "syncclass-fleet grafana push"
_KEPT = ("isDefault", "basicAuth", "basicAuthUser", "user", "database", "withCredentials")


class GrafanaPushError(Exception):
    """Why a push stopped; one line in Chinese and English."""


@dataclass(frozen=True)
class Outcome:
    kind: str  # "data source", "folder", "dashboard"
    title: str
    uid: str
    status: str  # "created", "updated", "unchanged", "left"
    note: str = ""

    def line(self) -> str:
        note = f" — {self.note}" if self.note else ""
        return (f"{_KIND[self.kind]} {self.kind} {self.title} (uid {self.uid}): "
                f"{_STATUS[self.status]} {self.status}{note}")


def _api(url: str, token: str, timeout: float) -> Any:
    try:
        from grafana_client import GrafanaApi
    except ImportError:
        raise GrafanaPushError(
            "未安装 grafana-client，请 pip install 'syncclass[grafana]' / grafana-client is "
            "not installed: pip install 'syncclass[grafana]'") from None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise GrafanaPushError(f"Grafana 地址无效：{url} / not a Grafana URL: {url} "
                               "(http://host:3000 or https://host/grafana)")
    prefix = parts.path.strip("/")
    # grafana-client joins the prefix and "api" without a slash of its own.
    return GrafanaApi(auth=token, host=parts.hostname, port=parts.port, protocol=parts.scheme,
                      url_path_prefix=f"{prefix}/" if prefix else "", timeout=timeout)


def _one_line(text: object) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def _reason(exc: BaseException) -> str:
    """The operating system's reason inside the HTTP library's nested retry message."""
    text = _one_line(exc)
    errno = re.search(r"\[Errno [^\]]*\][^'\")]*", text)
    return errno.group(0).strip() if errno else text


def _refusal(exc: Any, url: str) -> GrafanaPushError:
    status = getattr(exc, "status_code", 0)
    response = getattr(exc, "response", None)
    message = response.get("message", "") if isinstance(response, dict) else response
    message = _one_line(message or exc)
    if status == 401:
        return GrafanaPushError(f"Grafana 拒绝了令牌（401 未授权），请检查 --token / Grafana "
                                f"refused the token (401 Unauthorized) at {url}: check --token")
    if status == 403:
        return GrafanaPushError(
            f"令牌权限不足（403：{message}），请用 Admin 角色的服务账号令牌 / the token may not "
            f"do this (403: {message}): use a service-account token with the Admin role")
    if status == 0:  # a timeout or a broken connection, wrapped by grafana-client
        return GrafanaPushError(f"无法连接 Grafana {url} / cannot reach Grafana at {url}: "
                                f"{_reason(exc)}")
    return GrafanaPushError(f"Grafana 拒绝了请求（{status}：{message}） / Grafana refused the "
                            f"request ({status}: {message})")


def _found(get: Callable[[str], Any], key: str) -> dict[str, Any] | None:
    """The object, or None where Grafana answers 404."""
    from grafana_client.client import GrafanaClientError

    try:
        found = get(key)
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return None
        raise
    if not isinstance(found, dict):  # a web page: the URL is not Grafana's
        raise GrafanaPushError("应答不是 Grafana API 的，请检查 --url / the answer is not "
                               "from Grafana's API: check --url")
    return found


def _datasource(api: Any, source: InfluxSource) -> tuple[Outcome, str]:
    ds = api.datasource
    model = source.model()
    existing = _found(ds.get_datasource_by_uid, source.uid)
    if existing is None:
        existing = _found(ds.get_datasource_by_name, source.name)
    if existing is None:
        created = ds.create_datasource(model)
        uid = str(created["datasource"]["uid"])
        return Outcome("data source", source.name, uid, "created"), uid
    uid = str(existing["uid"])
    # Keys that someone set in Grafana and we do not manage stay as they are.
    json_data = {**(existing.get("jsonData") or {}), **model["jsonData"]}
    same = all(existing.get(k) == model[k] for k in ("name", "type", "access", "url"))
    same = same and json_data == (existing.get("jsonData") or {})
    if existing.get("readOnly"):
        note = "" if same else ("与本次设置不同，请改 Grafana 的数据源配置文件 / differs from this "
                                "push: change Grafana's provisioning file")
        return Outcome("data source", str(existing["name"]), uid, "left", note), uid
    if same and not source.token:
        return Outcome("data source", source.name, uid, "unchanged"), uid
    # An update replaces the whole data source: what we do not set is sent back as it is.
    kept = {k: existing[k] for k in _KEPT if k in existing}
    body = {**kept, **model, "uid": uid, "jsonData": json_data,
            "version": existing.get("version")}
    ds.update_datasource_by_uid(uid, body)
    # Grafana never returns a stored secret, so a given token is always written.
    note = "" if not same else "令牌已重新写入 / token written again"
    return Outcome("data source", source.name, uid, "updated", note), uid


def _folder(api: Any, title: str, uid: str) -> tuple[Outcome, str]:
    folders = api.folder
    existing = _found(folders.get_folder, uid)
    if existing is not None:
        if existing.get("title") == title:
            return Outcome("folder", title, uid, "unchanged"), uid
        folders.update_folder(uid, title=title, overwrite=True)
        return Outcome("folder", title, uid, "updated"), uid
    for folder in folders.get_all_folders():
        if folder.get("title") == title:  # made by hand or by file provisioning
            other = str(folder["uid"])
            return Outcome("folder", title, other, "unchanged", "已有同名文件夹 / existing "
                           "folder of that title used"), other
    folders.create_folder(title, uid=uid)
    return Outcome("folder", title, uid, "created"), uid


def _comparable(dashboard: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dashboard.items() if k not in ("id", "version")}


def _dashboard(api: Any, dashboard: dict[str, Any], folder_uid: str) -> Outcome:
    uid, title = str(dashboard["uid"]), str(dashboard["title"])
    existing = _found(api.dashboard.get_dashboard, uid)
    if existing is not None:
        meta = existing.get("meta") or {}
        same = (_comparable(existing["dashboard"]) == _comparable(dashboard)
                and meta.get("folderUid") == folder_uid)
        if same:
            return Outcome("dashboard", title, uid, "unchanged")
        if meta.get("provisioned"):
            return Outcome("dashboard", title, uid, "left", "与文件不同 / differs from "
                           "dashboards/: change the provisioned file")
    saved = api.dashboard.update_dashboard({
        "dashboard": {**dashboard, "id": None}, "folderUid": folder_uid, "overwrite": True,
        "message": _MESSAGE,
    })
    status = "created" if existing is None else "updated"
    note = f"version {saved.get('version')}"
    if saved.get("uid") != uid:  # Grafana kept a same-titled dashboard's uid in that folder
        note += f"; Grafana 保留了同名仪表盘的 uid / kept the uid {saved.get('uid')} of a " \
                "dashboard of that title"
    return Outcome("dashboard", title, str(saved.get("uid")), status, note)


def push(url: str, token: str, source: InfluxSource, dashboards: list[dict[str, Any]], *,
         folder_title: str, folder_uid: str, timeout: float = 10.0,
         report: Callable[[Outcome], None] = lambda outcome: None) -> list[Outcome]:
    """Bring the data source, the folder and every dashboard in Grafana up to date."""
    api = _api(url, token, timeout)
    from grafana_client.client import GrafanaException
    from niquests.exceptions import RequestException

    outcomes: list[Outcome] = []

    def done(outcome: Outcome) -> None:
        outcomes.append(outcome)
        report(outcome)

    try:
        outcome, ds_uid = _datasource(api, source)
        done(outcome)
        outcome, in_folder = _folder(api, folder_title, folder_uid)
        done(outcome)
        for dashboard in dashboards:
            done(_dashboard(api, point_at(dashboard, ds_uid), in_folder))
    except GrafanaException as exc:
        raise _refusal(exc, url) from None
    except RequestException as exc:
        raise GrafanaPushError(f"无法连接 Grafana {url} / cannot reach Grafana at {url}: "
                               f"{_reason(exc)}") from None
    return outcomes
