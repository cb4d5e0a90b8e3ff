"""The technicians' page in real Chromium against the real app served by uvicorn:
log in, see today's lesson with its readiness and an open alert, acknowledge it, try a
reboot and read why it was refused."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright

from fleet.actions.service import Actions
from fleet.actions.signer import Signer
from fleet.broker import Mosquitto, free_port, wait_for_port
from tests.fleet.api_world import NOW, PASSWORD, World, world
from tests.fleet.checks_helpers import FleetPublisher

__all__ = ["world"]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Where the last screenshot is kept for a person to look at (tmp_path is cleaned up).
SHOT = Path(os.environ.get("SYNCCLASS_WEB_SHOT", "/tmp/syncclass-web.png"))


@pytest.fixture
def served(world: World, broker: Mosquitto, tmp_path: Path) -> Iterator[str]:
    publisher = FleetPublisher(broker)
    world.services.actions = Actions(
        world.sessions, publisher, Signer.from_file(tmp_path / "fleet.key"), clock=world.clock
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(world.app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    publisher.close()


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


def _log_in(page: Page, url: str, username: str, password: str = PASSWORD) -> None:
    page.goto(url)
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-form button[type=submit]")


def test_technician_checks_the_morning_and_acknowledges(
    world: World, served: str, browser: Browser, tmp_path: Path
) -> None:
    lesson = world.add_lesson("洞头区实验小学", ["洞头区鹿西乡小学"], NOW + timedelta(minutes=10))
    for device in ("dongtou-shiyan-sync1", "dongtou-luxi-sync1"):
        world.add_check(lesson, device, "pass", NOW - timedelta(minutes=5))
    alert_id = world.take_offline("dongtou-luxi-sync1")

    page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page.on("dialog", lambda dialog: dialog.accept())
    _log_in(page, served, "dt-luxi-tech", "wrong-password")
    expect(page.locator("#login-error")).to_contain_text("用户名或密码错误")
    _log_in(page, served, "dt-luxi-tech")

    row = page.locator(f"tr[data-lesson='{lesson}']")
    expect(row.locator(".readiness")).to_contain_text("就绪")
    expect(row).to_contain_text("洞头区鹿西乡小学")
    alert = page.locator(f"tr[data-alert='{alert_id}']")
    expect(alert).to_contain_text("告警中")
    expect(page.locator("tr[data-device='dongtou-luxi-sync1']")).to_contain_text("离线 offline")

    # The lesson starts in 10 minutes: a reboot is refused, and the page says why.
    device = page.locator("tr[data-device='dongtou-luxi-sync1']")
    device.get_by_role("button", name="重启 Reboot").click()
    expect(device).to_contain_text("被拒绝")
    expect(device.get_by_role("button", name="强制重启 Force")).to_be_visible()

    alert.get_by_role("button", name="确认 Ack").click()
    alert.get_by_placeholder("处理说明 comment (who is on it)").fill("叶老师在处理 on my way")
    alert.get_by_role("button", name="确认 Acknowledge").click()
    expect(alert).to_contain_text("由 dt-luxi-tech 确认")
    expect(alert).to_contain_text("叶老师在处理 on my way")
    # The refresh after the acknowledgement keeps the refusal's reason on screen.
    expect(device).to_contain_text("被拒绝")

    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    SHOT.write_bytes(shot.read_bytes())
    assert world.get("admin", f"/api/v1/alerts/{alert_id}").json()["state"] == "acknowledged"
