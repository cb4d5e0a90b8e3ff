"""The syncclass dashboards in Grafana without provisioning files: `syncclass-fleet grafana push`.

grafana-client (the ``grafana`` extra) is imported only when a push runs: it brings
urllib3-future, which replaces urllib3 wherever it is installed, so the fleet itself must
import and run without it.
"""
