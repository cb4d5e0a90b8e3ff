"""A stand-in Grafana: the HTTP API calls that `grafana push` makes, over a real HTTP server.

Grafana itself cannot be installed here (no Debian, PyPI or npm package ships the server),
so this implements, from Grafana's HTTP API documentation, the endpoints and status codes
that matter for a push, and refuses what real Grafana refuses so that a wrong client call
fails the test:

- bearer-token auth: no or an unknown token is 401; a Viewer may only read, an Editor may
  also write folders and dashboards, data sources need an Admin (403 otherwise);
- data sources (``/api/datasources``): get by uid or name (404 when unknown), create (409
  when the name or uid is taken, 400 without name or type), update by uid (404, 403 for a
  read-only provisioned one, 409 for a stale ``version`` or a taken name); secrets in
  ``secureJsonData`` are kept apart and only flagged in ``secureJsonFields``;
- folders (``/api/folders``): list, get by uid (404), create (409 when the uid or the
  title is taken), update (404, 412 version-mismatch unless ``overwrite``);
- dashboards: ``GET /api/dashboards/uid/:uid`` (404) and ``POST /api/dashboards/db`` with
  Grafana's save rules: 400 for an empty title, a uid over 40 characters, an unknown
  ``folderUid`` or a provisioned dashboard; 412 version-mismatch when the version is stale
  and ``overwrite`` is false; 412 name-exists for another dashboard of the same title in
  the folder, which ``overwrite`` takes over (id, uid and version) instead.

It shares no code with the fleet.  Tests read and seed its state directly, as a county's
admin clicking in Grafana would have made it.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import unquote

ROLES = {"Viewer": 0, "Editor": 1, "Admin": 2}
_PUBLIC_DS = ("id", "uid", "orgId", "name", "type", "access", "url", "user", "database",
              "basicAuth", "isDefault", "jsonData", "secureJsonFields", "version", "readOnly")


class _Refusal(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, body)
        self.status, self.body = status, body


def _refuse(code: int, message: str, **extra: Any) -> _Refusal:
    return _Refusal(code, {"message": message, **extra})


def _slug(title: str) -> str:
    return re.sub(r"[^\w]+", "-", title.lower()).strip("-")


@dataclass
class Call:
    method: str
    path: str
    status: int
    body: Any


@dataclass
class State:
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)  # by uid
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)  # by data source uid
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)  # by uid
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)  # by uid
    calls: list[Call] = field(default_factory=list)


class StandinGrafana:
    def __init__(self, tokens: dict[str, str] | None = None) -> None:
        self.tokens = tokens or {"admin-token": "Admin"}
        self.state = State()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                standin._handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> StandinGrafana:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- what a county's admin would have made by hand or by file provisioning ----------

    def seed_datasource(self, name: str, uid: str = "", read_only: bool = False,
                        **fields: Any) -> dict[str, Any]:
        with self._lock:
            return self._add_datasource({"name": name, "uid": uid or self._uid(),
                                         "type": "influxdb", **fields}, read_only)

    def seed_folder(self, title: str, uid: str = "") -> dict[str, Any]:
        with self._lock:
            return self._add_folder({"title": title, "uid": uid or self._uid()})

    def seed_dashboard(self, dashboard: dict[str, Any], folder_uid: str = "",
                       provisioned: bool = False) -> None:
        """A dashboard saved by hand, or loaded by Grafana's file provisioning."""
        with self._lock:
            ident = next(self._ids)
            self.state.dashboards[dashboard["uid"]] = {
                "id": ident, "dashboard": {**dashboard, "id": ident, "version": 1},
                "folderUid": folder_uid, "version": 1, "provisioned": provisioned}

    def edit_dashboard(self, uid: str, **changes: Any) -> None:
        """Someone saves the dashboard in Grafana's editor: a new version."""
        with self._lock:
            stored = self.state.dashboards[uid]
            stored["dashboard"].update(changes)
            stored["version"] += 1
            stored["dashboard"]["version"] = stored["version"]

    def writes(self) -> list[Call]:
        return [c for c in self.state.calls if c.method != "GET"]

    # -- HTTP --------------------------------------------------------------------------

    def _uid(self) -> str:
        return secrets.token_hex(7)

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0]
        body: Any = None
        try:
            length = int(request.headers.get("Content-Length") or 0)
            raw = request.rfile.read(length) if length else b""
            if raw:
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    raise _refuse(400, "bad request data") from None
            role = self._role(request.headers.get("Authorization", ""))
            with self._lock:
                status, answer = self._route(request.command, path, body, role)
        except _Refusal as refusal:
            status, answer = refusal.status, refusal.body
        self.state.calls.append(Call(request.command, path, status, body))
        data = json.dumps(answer).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=UTF-8")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _role(self, authorization: str) -> int:
        scheme, _, token = authorization.partition(" ")
        if scheme != "Bearer" or token not in self.tokens:
            raise _refuse(401, "Invalid API key")
        return ROLES[self.tokens[token]]

    def _route(self, method: str, path: str, body: Any, role: int) -> tuple[int, Any]:
        routes: list[tuple[str, str, Callable[..., Any], int]] = [
            ("GET", r"/api/datasources/uid/([^/]+)", self._get_ds_uid, 2),
            ("GET", r"/api/datasources/name/([^/]+)", self._get_ds_name, 2),
            ("POST", r"/api/datasources", self._post_ds, 2),
            ("PUT", r"/api/datasources/uid/([^/]+)", self._put_ds, 2),
            ("GET", r"/api/folders", self._list_folders, 0),
            ("GET", r"/api/folders/([^/]+)", self._get_folder, 0),
            ("POST", r"/api/folders", self._post_folder, 1),
            ("PUT", r"/api/folders/([^/]+)", self._put_folder, 1),
            ("GET", r"/api/dashboards/uid/([^/]+)", self._get_dashboard, 0),
            ("POST", r"/api/dashboards/db", self._post_dashboard, 1),
        ]
        for verb, pattern, handler, needed in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                if role < needed:
                    raise _refuse(403, "You'll need additional permissions to perform this "
                                  "action.")
                if method in ("POST", "PUT") and not isinstance(body, dict):
                    raise _refuse(400, "bad request data")
                return 200, handler(*(unquote(g) for g in match.groups()), *(
                    [body] if method in ("POST", "PUT") else []))
        raise _refuse(404, "Not found")

    # -- data sources ------------------------------------------------------------------

    @staticmethod
    def _public(ds: dict[str, Any]) -> dict[str, Any]:
        return {k: ds[k] for k in _PUBLIC_DS}

    def _get_ds_uid(self, uid: str) -> dict[str, Any]:
        if uid not in self.state.datasources:
            raise _refuse(404, "Data source not found")
        return self._public(self.state.datasources[uid])

    def _get_ds_name(self, name: str) -> dict[str, Any]:
        for ds in self.state.datasources.values():
            if ds["name"] == name:
                return self._public(ds)
        raise _refuse(404, "Data source not found")

    def _add_datasource(self, body: dict[str, Any], read_only: bool = False) -> dict[str, Any]:
        if not body.get("name") or not body.get("type"):
            raise _refuse(400, "Required: name and type")
        if any(ds["name"] == body["name"] for ds in self.state.datasources.values()):
            raise _refuse(409, "data source with the same name already exists")
        uid = body.get("uid") or self._uid()
        if uid in self.state.datasources:
            raise _refuse(409, "data source with the same uid already exists")
        secure = dict(body.get("secureJsonData") or {})
        ds = {"id": next(self._ids), "uid": uid, "orgId": 1, "name": body["name"],
              "type": body["type"], "access": body.get("access", "proxy"),
              "url": body.get("url", ""), "user": body.get("user", ""),
              "database": body.get("database", ""), "basicAuth": bool(body.get("basicAuth")),
              "isDefault": bool(body.get("isDefault")), "jsonData": body.get("jsonData") or {},
              "secureJsonFields": {k: True for k in secure}, "version": 1,
              "readOnly": read_only}
        self.state.datasources[uid] = ds
        self.state.secrets[uid] = secure
        return self._public(ds)

    def _post_ds(self, body: dict[str, Any]) -> dict[str, Any]:
        ds = self._add_datasource(body)
        return {"datasource": ds, "id": ds["id"], "message": "Datasource added",
                "name": ds["name"]}

    def _put_ds(self, uid: str, body: dict[str, Any]) -> dict[str, Any]:
        if uid not in self.state.datasources:
            raise _refuse(404, "Data source not found")
        ds = self.state.datasources[uid]
        if ds["readOnly"]:
            raise _refuse(403, "Cannot update read-only data source")
        if not body.get("name") or not body.get("type"):
            raise _refuse(400, "Required: name and type")
        if body.get("version") is not None and body["version"] != ds["version"]:
            raise _refuse(409, "Datasource has already been updated by someone else. Please "
                          "reload and try again")
        if any(o["name"] == body["name"] and o is not ds
               for o in self.state.datasources.values()):
            raise _refuse(409, "data source with the same name already exists")
        new_uid = body.get("uid") or uid
        if new_uid != uid and new_uid in self.state.datasources:
            raise _refuse(409, "data source with the same uid already exists")
        kept = self.state.secrets.pop(uid)
        kept.update(body.get("secureJsonData") or {})  # secrets not sent again are kept
        ds.update(uid=new_uid, name=body["name"], type=body["type"],
                  access=body.get("access", "proxy"), url=body.get("url", ""),
                  user=body.get("user", ""), database=body.get("database", ""),
                  basicAuth=bool(body.get("basicAuth")), isDefault=bool(body.get("isDefault")),
                  jsonData=body.get("jsonData") or {},
                  secureJsonFields={k: True for k in kept}, version=ds["version"] + 1)
        del self.state.datasources[uid]
        self.state.datasources[new_uid] = ds
        self.state.secrets[new_uid] = kept
        return {"datasource": self._public(ds), "id": ds["id"],
                "message": "Datasource updated", "name": ds["name"]}

    # -- folders -----------------------------------------------------------------------

    def _folder_view(self, folder: dict[str, Any]) -> dict[str, Any]:
        return {**folder, "url": f"/dashboards/f/{folder['uid']}/{_slug(folder['title'])}",
                "hasAcl": False, "canSave": True, "canEdit": True, "canAdmin": True}

    def _list_folders(self) -> list[dict[str, Any]]:
        return [{k: f[k] for k in ("id", "uid", "title")} for f in self.state.folders.values()]

    def _get_folder(self, uid: str) -> dict[str, Any]:
        if uid not in self.state.folders:
            raise _refuse(404, "folder not found")
        return self._folder_view(self.state.folders[uid])

    def _add_folder(self, body: dict[str, Any]) -> dict[str, Any]:
        title = body.get("title")
        if not title:
            raise _refuse(400, "folder title cannot be empty")
        uid = body.get("uid") or self._uid()
        if len(uid) > 40:
            raise _refuse(400, "uid too long, max 40 characters")
        if uid in self.state.folders:
            raise _refuse(409, "a folder with the same uid already exists")
        if any(f["title"] == title for f in self.state.folders.values()):
            raise _refuse(409, "a folder or dashboard in the general folder with the same "
                          "name already exists")
        folder = {"id": next(self._ids), "uid": uid, "title": title, "version": 1}
        self.state.folders[uid] = folder
        return self._folder_view(folder)

    def _post_folder(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._add_folder(body)

    def _put_folder(self, uid: str, body: dict[str, Any]) -> dict[str, Any]:
        if uid not in self.state.folders:
            raise _refuse(404, "folder not found")
        folder = self.state.folders[uid]
        if not body.get("overwrite") and body.get("version") != folder["version"]:
            raise _refuse(412, "The folder has been changed by someone else",
                          status="version-mismatch")
        title = body.get("title") or folder["title"]
        if any(f["title"] == title and f is not folder for f in self.state.folders.values()):
            raise _refuse(409, "a folder or dashboard in the general folder with the same "
                          "name already exists")
        folder.update(title=title, version=folder["version"] + 1)
        return self._folder_view(folder)

    # -- dashboards --------------------------------------------------------------------

    def _get_dashboard(self, uid: str) -> dict[str, Any]:
        if uid not in self.state.dashboards:
            raise _refuse(404, "Dashboard not found")
        stored = self.state.dashboards[uid]
        folder = self.state.folders.get(stored["folderUid"])
        return {"dashboard": stored["dashboard"], "meta": {
            "url": f"/d/{uid}/{_slug(stored['dashboard']['title'])}",
            "slug": _slug(stored["dashboard"]["title"]), "version": stored["version"],
            "folderUid": stored["folderUid"], "folderId": folder["id"] if folder else 0,
            "folderTitle": folder["title"] if folder else "General",
            "provisioned": stored["provisioned"]}}

    def _post_dashboard(self, body: dict[str, Any]) -> dict[str, Any]:
        dashboard = body.get("dashboard")
        if not isinstance(dashboard, dict):
            raise _refuse(400, "bad request data")
        dashboard = dict(dashboard)
        title = dashboard.get("title")
        if not title:
            raise _refuse(400, "Dashboard title cannot be empty")
        uid = dashboard.get("uid") or self._uid()
        if len(uid) > 40:
            raise _refuse(400, "uid too long, max 40 characters")
        folder_uid = body.get("folderUid") or ""
        if folder_uid and folder_uid not in self.state.folders:
            raise _refuse(400, "folder not found")
        overwrite = bool(body.get("overwrite"))
        version = dashboard.get("version")
        existing = self.state.dashboards.get(uid)
        if dashboard.get("id") is not None and (existing is None
                                                or existing["id"] != dashboard["id"]):
            raise _refuse(404, "Dashboard not found", status="not-found")
        if existing is not None:
            if existing["provisioned"]:
                raise _refuse(400, "Cannot save provisioned dashboard")
            if version != existing["version"] and not overwrite:
                raise _refuse(412, "The dashboard has been changed by someone else",
                              status="version-mismatch")
        same_title = [d for u, d in self.state.dashboards.items() if u != uid
                      and d["folderUid"] == folder_uid
                      and _slug(d["dashboard"]["title"]) == _slug(title)]
        if same_title:
            if not overwrite:
                raise _refuse(412, "A dashboard with the same name in the folder already "
                              "exists", status="name-exists")
            existing = same_title[0]  # Grafana overwrites it and keeps its id and uid
            del self.state.dashboards[existing["dashboard"]["uid"]]
            uid = existing["dashboard"]["uid"]
        ident = existing["id"] if existing else next(self._ids)
        new_version = existing["version"] + 1 if existing else 1
        dashboard.update(id=ident, uid=uid, version=new_version)
        self.state.dashboards[uid] = {"id": ident, "dashboard": dashboard,
                                      "folderUid": folder_uid, "version": new_version,
                                      "provisioned": False}
        return {"id": ident, "uid": uid, "url": f"/d/{uid}/{_slug(title)}",
                "status": "success", "version": new_version, "slug": _slug(title)}
