from __future__ import annotations

from pathlib import Path

import pytest

from fleet.api.config import LoginConfig
from fleet.config import FleetConfig, load_config, parse_config
from fleet.settings import ConfigError

EXAMPLE = Path(__file__).parents[2] / "provisioning" / "fleet.example.toml"


def test_documented_example_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.mqtt.url.startswith("mqtts://")
    assert config.actions.limits[0].actions == ("reboot",)
    assert config.api.login == LoginConfig(), "the example states the defaults"


def test_empty_file_is_the_embedded_default() -> None:
    assert parse_config({}) == FleetConfig().coherent()


def test_shared_settings_come_from_one_place() -> None:
    config = parse_config({"mqtt": {"prefix": "county/v1"}, "checks": {"lead_minutes": 20}})
    assert config.actions.prefix == "county/v1"
    assert config.actions.lead_minutes == 20


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"alerts": {"escalate_afer_s": 5}}, "alerts.escalate_afer_s"),
        ({"checks": {"lead_minutes": "soon"}}, "checks.lead_minutes"),
        ({"http": {"port": True}}, "http.port"),
        ({"api": {"bandwidth_tests_per_device": 0}}, "api"),
        ({"timezone": "Mars/Olympus"}, "FleetConfig"),
        ({"api": {"login": {"account": {"free_failures": 0, "lockout_after": 3}}}},
         "api.login.account"),
        ({"api": {"login": {"lockout_s": 60, "forget_after_s": 30}}}, "api.login"),
    ],
)
def test_bad_keys_are_named(doc: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(doc)
    assert err.value.key == key
