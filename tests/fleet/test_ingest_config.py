"""Ingest and time-series configuration from TOML tables, and the reconnect backoff."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.contract import encode
from fleet.ingest import IngestConfig, backoff_delay
from fleet.settings import ConfigError, section
from fleet.tsdb import TsdbConfig
from tests.fleet.ingest_helpers import telemetry


def test_tables_build_the_dataclasses() -> None:
    cfg = section(IngestConfig, {"url": "mqtts://mq.example.cn:8883", "username": "fleet",
                                 "ca_file": "/etc/syncclass/ca.crt", "share_group": ""},
                  "ingest")
    assert cfg.ca_file == Path("/etc/syncclass/ca.crt")
    assert cfg.share_group == ""
    tsdb = section(TsdbConfig, {"enabled": True, "url": "http://vm:8428", "batch_size": 100},
                   "tsdb")
    assert (tsdb.enabled, tsdb.batch_size) == (True, 100)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"urll": "mqtt://x"}, "ingest.urll"),
        ({"url": "http://x"}, "ingest"),
        ({"queue_size": 0}, "ingest"),
        ({"share_group": "a/b"}, "ingest"),
        ({"keepalive": "10"}, "ingest.keepalive"),
    ],
)
def test_bad_ingest_keys_are_named(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        section(IngestConfig, data, "ingest")
    assert err.value.key == key


def test_backoff_grows_to_the_cap_with_jitter() -> None:
    assert backoff_delay(0, 0.5, 30, rng=lambda: 1.0) == 0.5
    assert backoff_delay(3, 0.5, 30, rng=lambda: 1.0) == 4.0
    assert backoff_delay(3, 0.5, 30, rng=lambda: 0.0) == 2.0
    assert backoff_delay(50, 0.5, 30, rng=lambda: 1.0) == 30


def test_refusals_are_logged_at_most_once_per_reason_and_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from fleet.ingest import Validator

    now = [0.0]
    validator = Validator("syncclass/v1", lambda: {"dev-a"}, log_every_s=60,
                          monotonic=lambda: now[0])
    bad = "syncclass/v1/dev/dev-a/telemetry"
    with caplog.at_level("WARNING", logger="fleet.ingest.validate"):
        for _ in range(100):
            assert validator.check(bad, b"garbage") is None
        validator.check("syncclass/v1/dev/ghost/telemetry", encode(telemetry("ghost", 1)))
        now[0] = 61.0
        validator.check(bad, b"garbage")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3  # bad-json, a different reason, bad-json again after the period
    assert "(101 so far" in lines[-1]
    assert validator.refused == {"bad-json": 101, "unknown-device": 1}
