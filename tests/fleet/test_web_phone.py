"""The technicians' page on a phone (390×844, touch) and on a desktop (1366×768), in real
Chromium against the served app: no sideways scrolling, why a lesson is not ready in
plain words without a click, the ack and reboot buttons on screen and clickable, a
``#alert-N`` link opening its alert (in a new tab too, without a new login: an HttpOnly
cookie session the page's scripts cannot read), bilingual
validation errors, and the API docs with no request leaving the machine.

Screenshots for a reviewer are written to ``tests/screenshots/`` by ``make screenshots``
(``SYNCCLASS_SCREENSHOTS``); a plain test run writes them to a temporary folder, so it
never changes the committed ones."""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from agent.hardware.scenario import Fault
from agent.hardware.simulated import SimulatedHardware
from agent.probes.base import CheckParams, ProbeContext
from agent.probes.camera import CameraProbe
from agent.thresholds import Thresholds
from tests.fleet.api_world import NOW, World, world
from tests.fleet.web_page import browser, log_in, served

__all__ = ["browser", "served", "world"]

SCREENSHOTS = Path(os.environ.get(
    "SYNCCLASS_SCREENSHOTS", Path(tempfile.gettempdir()) / "syncclass-screenshots"))
SCREENSHOTS.mkdir(parents=True, exist_ok=True)
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
    "locale": "zh-CN",
}
DESKTOP: dict[str, Any] = {"viewport": {"width": 1366, "height": 768}, "locale": "zh-CN"}
MAIN, RECEIVER = "dongtou-shiyan-sync1", "dongtou-luxi-sync1"


def unplugged_camera_findings() -> list[dict[str, Any]]:
    """What the agent's camera probe reports in a check once a camera it saw is unplugged."""
    hardware = SimulatedHardware()
    context = ProbeContext(hardware, Thresholds(), {})
    probe = CameraProbe()
    probe.collect(context)  # the camera is seen, so its absence is a finding
    hardware.apply(Fault("camera_unplugged", device=hardware.cameras()[0].id))
    return [finding.to_json() for finding in probe.check(context, CheckParams()).findings]


def screen_width(page: Page) -> int:
    # Not window.innerWidth: a phone widens its layout viewport to a page that overflows
    # (the old page read 617 px wide at 390 px), and would then hide the overflow.
    size = page.viewport_size
    assert size is not None
    return size["width"]


def no_sideways_scroll(page: Page) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1] == screen_width(page), widths


def on_screen(page: Page, selector: str) -> None:
    """The element is scrolled to and lies wholly inside the viewport's width."""
    target = page.locator(selector)
    target.scroll_into_view_if_needed()
    box = target.bounding_box()
    width = screen_width(page)
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (box, width)


def today(world: World) -> dict[str, int]:
    """Three lessons of 洞头: one in progress and ready, the next one not ready (the
    receiving school's camera is unplugged), and one ended without a check."""
    findings = unplugged_camera_findings()
    assert [f["reason"] for f in findings] == ["camera_missing"]
    lessons = {
        "in_progress": world.add_lesson("洞头区实验小学", ["洞头区鹿西乡小学"],
                                        NOW - timedelta(minutes=10), subject="语文"),
        "next": world.add_lesson("洞头区实验小学", ["洞头区鹿西乡小学"],
                                 NOW + timedelta(minutes=35), subject="数学"),
        "ended": world.add_lesson("洞头区实验小学", ["洞头区鹿西乡小学"],
                                  NOW - timedelta(hours=2), subject="音乐"),
    }
    for device in (MAIN, RECEIVER):
        world.add_check(lessons["in_progress"], device, "pass", NOW - timedelta(minutes=25))
    world.add_check(lessons["next"], MAIN, "pass", NOW - timedelta(minutes=1))
    world.add_check(lessons["next"], RECEIVER, "fail", NOW - timedelta(minutes=1), findings)
    return lessons


# 390×844 is the screenshots' phone; 360 and 414 px are the narrowest and widest common.
@pytest.mark.parametrize("width,height", [(390, 844), (360, 780), (414, 896)])
def test_phone_shows_why_a_lesson_is_not_ready_and_every_button_fits(
    world: World, served: str, browser: Browser, width: int, height: int
) -> None:
    lessons = today(world)
    alert_id = world.take_offline(RECEIVER)
    context = browser.new_context(**(PHONE | {"viewport": {"width": width, "height": height}}))
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page, served, "dt-luxi-tech")

    # Problems first: the not-ready lesson leads although another one is in progress.
    cards = page.locator("#lessons-body article.lesson")
    expect(cards).to_have_count(3)
    order = [lessons["next"], lessons["in_progress"], lessons["ended"]]
    assert [int(cards.nth(i).get_attribute("data-lesson") or 0) for i in range(3)] == order
    first = cards.nth(0)
    expect(first).to_contain_text("下一节 next")
    expect(cards.nth(1)).to_contain_text("进行中 in progress")
    expect(cards.nth(2)).to_contain_text("已结束 ended")
    expect(first.locator(".readiness")).to_contain_text("未就绪 not ready")
    # Both ends, each with its state; the faulty school named with what is wrong and
    # what to do, on the first screen, with nothing clicked.
    receiving = first.locator("li.end[data-end-state='not_ready']")
    expect(receiving).to_contain_text("听课 receiving")
    expect(receiving.locator("li.finding")).to_contain_text(
        "洞头区鹿西乡小学 同步课堂教室 Teacher camera：摄像头未连接（USB 线松动或设备损坏）")
    expect(receiving.locator("li.finding")).to_contain_text("loose USB cable")
    expect(receiving.locator("li.finding")).to_be_in_viewport()
    expect(first.locator("li.end[data-end-state='ready']")).to_contain_text("主讲 main")
    no_sideways_scroll(page)
    if width == 390:  # the one phone a reviewer looks at
        page.screenshot(path=str(SCREENSHOTS / "phone-390x844-first-screen.png"))

    # The ack button is on screen and takes a normal click (nothing covers it).
    alert = f"tr[data-alert='{alert_id}']"
    on_screen(page, f"{alert} button:has-text('确认 Ack')")
    page.locator(alert).get_by_role("button", name="确认 Ack").click()
    page.locator(alert).get_by_placeholder("处理说明 comment (who is on it)").fill("叶老师在处理")
    page.locator(alert).get_by_role("button", name="确认 Acknowledge").click()
    expect(page.locator(alert)).to_contain_text("由 dt-luxi-tech 确认")

    # A lesson is in progress: the reboot is refused, and the whole reason fits.
    device = f"tr[data-device='{RECEIVER}']"
    on_screen(page, f"{device} button:has-text('重启 Reboot')")
    page.locator(device).get_by_role("button", name="重启 Reboot").click()
    refusal = page.locator(device).locator(".msg.error")
    expect(refusal).to_contain_text("被拒绝")
    on_screen(page, f"{device} .msg.error")
    # Forcing without a reason says so and keeps the reason box.
    on_screen(page, f"{device} button:has-text('强制重启 Force')")
    page.locator(device).get_by_role("button", name="强制重启 Force").click()
    expect(page.locator(device)).to_contain_text("请填写强制原因 / reason needed")
    expect(page.locator(device).get_by_placeholder("强制原因 reason to force")).to_be_visible()
    no_sideways_scroll(page)
    if width == 390:
        page.screenshot(path=str(SCREENSHOTS / "phone-390x844-full.png"), full_page=True)
    context.close()


def test_alert_link_opens_the_alert_after_login_and_in_a_new_tab(
    world: World, served: str, browser: Browser
) -> None:
    today(world)
    alert_id = world.take_offline(RECEIVER)
    other = world.take_offline("dongtou-shiyan-sync1")
    context = browser.new_context(**DESKTOP)
    page = context.new_page()
    # The e-mail's link, before logging in: the alert is opened once logged in.
    page.goto(f"{served}/#alert-{alert_id}")
    page.fill("#username", "dt-dianjiao")
    page.fill("#password", "syncclass-demo")
    page.click("#login-form button[type=submit]")
    row = page.locator(f"#alert-{alert_id}")
    expect(row).to_have_class("linked")
    expect(row).to_be_in_viewport()
    expect(page.locator(f"#alert-{other}")).not_to_have_class("linked")
    no_sideways_scroll(page)
    page.screenshot(path=str(SCREENSHOTS / "desktop-1366x768.png"), full_page=True)

    # A second link, in a new tab of the same browser: no new login. The alert was
    # resolved meanwhile, and still opens.
    resolved = world.post("dt-dianjiao", f"/api/v1/alerts/{other}/resolve",
                          json={"comment": "已修好"})
    assert resolved.status_code == 200, resolved.text
    tab = context.new_page()
    tab.goto(f"{served}/#alert-{other}")
    expect(tab.locator("#login")).to_be_hidden()
    expect(tab.locator(f"#alert-{other}")).to_have_class("linked")
    expect(tab.locator(f"#alert-{other}")).to_contain_text("已恢复 resolved")

    # A refused form says what is wrong in Chinese, with pydantic's English.
    form = tab.locator("#window-form")
    form.get_by_placeholder("名称 name（如 夜间 nights）").fill("洞头夜间")
    form.locator("input[name=start_time]").fill("22:00")
    form.locator("input[name=end_time]").fill("06:00")
    form.get_by_role("button", name="添加维护时段 Add window").click()
    expect(form).to_contain_text("weekdays：至少需要一项 / List should have at least 1 item")

    # The page's scripts never hold the session's token (it is an HttpOnly cookie).
    assert "syncclass_session" not in tab.evaluate("document.cookie")
    stored = tab.evaluate("Object.values(localStorage).join(' ')")
    assert [c["value"] for c in context.cookies() if c["name"] == "syncclass_session"] != []
    assert all(c["value"] not in stored for c in context.cookies())
    # Logging out in one tab ends the session for the other too.
    tab.get_by_role("button", name="退出 Log out").click()
    expect(tab.locator("#login")).to_be_visible()
    page.evaluate("refresh()")
    expect(page.locator("#login")).to_be_visible()
    context.close()


def test_api_docs_render_with_no_request_leaving_the_machine(
    served: str, browser: Browser
) -> None:
    leaving: list[str] = []

    def local_only(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            leaving.append(route.request.url)
            route.abort()

    context = browser.new_context(**DESKTOP)
    context.route("**/*", local_only)
    page = context.new_page()
    page.goto(f"{served}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("syncclass fleet")
    expect(page.locator(".opblock-tag-section").first).to_be_visible()
    icon = page.request.get(f"{served}/favicon.ico")
    assert (icon.status, icon.headers["content-type"]) == (200, "image/svg+xml")
    assert page.request.get(f"{served}/static/favicon.svg").status == 200
    assert leaving == []
    context.close()
