"""`syncclass-fleet grafana push`: the dashboards into a Grafana that the county shares."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from fleet.config import load_config
from fleet.grafana.model import (
    DASHBOARDS_DIR,
    DATASOURCE_NAME,
    DATASOURCE_UID,
    FOLDER_TITLE,
    FOLDER_UID,
    DashboardError,
    InfluxSource,
    load_dashboards,
)

__all__ = ["add_grafana_commands"]


def _source(args: argparse.Namespace) -> InfluxSource:
    """Flags first, then the fleet's [tsdb] when --config is given, then the defaults."""
    default = InfluxSource()
    url, database = default.url, default.database
    if args.config is not None:
        tsdb = load_config(args.config).tsdb
        url, database = tsdb.url, tsdb.bucket
    return InfluxSource(
        url=args.influx_url or url, database=args.influx_db or database,
        token=args.influx_token or os.environ.get("SYNCCLASS_INFLUX_TOKEN", ""),
        name=args.datasource_name, uid=args.datasource_uid,
    )


def _push(args: argparse.Namespace) -> int:
    from fleet.grafana.push import GrafanaPushError, push

    token = args.token or os.environ.get("GRAFANA_TOKEN", "")
    if not token:
        print("缺少 Grafana 令牌：--token 或 GRAFANA_TOKEN / no Grafana token: give --token or "
              "set GRAFANA_TOKEN", file=sys.stderr)
        return 2
    try:
        dashboards = load_dashboards(args.dashboards)
        push(args.url, token, _source(args), dashboards, folder_title=args.folder,
             folder_uid=args.folder_uid, timeout=args.timeout,
             report=lambda outcome: print(outcome.line(), flush=True))
    except (DashboardError, GrafanaPushError) as exc:
        print(f"推送失败 / push failed: {exc}", file=sys.stderr)
        return 1
    return 0


def add_grafana_commands(sub: Any) -> None:
    """Add `grafana push` to the fleet's subcommands."""
    grafana = sub.add_parser("grafana", help="Grafana dashboards through its HTTP API")
    actions = grafana.add_subparsers(dest="grafana_command", required=True)
    push = actions.add_parser(
        "push", help="create or update the data source, folder and dashboards in a Grafana",
        description="Idempotent: a second push reports 'unchanged'. Needs the grafana extra "
                    "(pip install 'syncclass[grafana]').")
    push.set_defaults(func=_push)
    push.add_argument("--url", required=True, help="Grafana base URL, e.g. http://grafana:3000")
    push.add_argument("--token", default="",
                      help="service-account token with the Admin role (or GRAFANA_TOKEN)")
    push.add_argument("--config", type=Path, default=None,
                      help="fleet TOML: its [tsdb] url and bucket become the data source's")
    push.add_argument("--influx-url", default="", help="InfluxDB URL as Grafana reaches it")
    push.add_argument("--influx-db", default="",
                      help="InfluxQL database (InfluxDB 2/3: the bucket's DBRP mapping)")
    push.add_argument("--influx-token", default="",
                      help="InfluxDB 2/3 read token (or SYNCCLASS_INFLUX_TOKEN)")
    push.add_argument("--datasource-name", default=DATASOURCE_NAME)
    push.add_argument("--datasource-uid", default=DATASOURCE_UID)
    push.add_argument("--folder", default=FOLDER_TITLE, help="folder title")
    push.add_argument("--folder-uid", default=FOLDER_UID)
    push.add_argument("--dashboards", type=Path, default=DASHBOARDS_DIR,
                      help="directory of dashboard JSON (default: the repository's dashboards/)")
    push.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP request")
