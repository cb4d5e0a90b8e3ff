"""The alert list, live updates and the wall screen in real Chromium against the served
app: filters narrow the list on the server; a silence set from an alert mutes it, and
the page shows so without a reload (the live stream); the wall screen fills a 1920×1080
screen and a phone without sideways scrolling; and axe-core (shipped in the
axe-playwright-python wheel, never fetched) finds nothing serious on any of them.

``make screenshots`` writes the alerts and the wall at both sizes (see test_web_phone)."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from playwright.sync_api import Browser, Page, expect

from tests.fleet.api_world import World, world
from tests.fleet.test_web_phone import (
    DESKTOP,
    MAIN,
    PHONE,
    RECEIVER,
    SCREENSHOTS,
    no_sideways_scroll,
    today,
)
from tests.fleet.web_page import browser, log_in, served

__all__ = ["browser", "served", "world"]

WALL: dict[str, Any] = {"viewport": {"width": 1920, "height": 1080}, "locale": "zh-CN"}
FONT_SIZE = "parseFloat(getComputedStyle(document.querySelector('#wall')).fontSize)"
AXE = files("axe_playwright_python").joinpath("axe.min.js").read_text(encoding="utf-8")


def accessible(page: Page) -> None:
    """axe-core finds nothing serious or critical on the page as it is now."""
    found = serious_violations(page)
    assert not found, "\n".join(found)


def serious_violations(page: Page) -> list[str]:
    page.add_script_tag(content=AXE)
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']} at {n['target']}: {n['failureSummary']}"
            for v in result["violations"] if v["impact"] in ("serious", "critical")
            for n in v["nodes"]]


def live(page: Page) -> None:
    expect(page.locator("#live-state")).to_have_attribute("data-live", "on")


def test_filters_silence_from_an_alert_and_live_mute(
    world: World, served: str, browser: Browser
) -> None:
    today(world)
    luxi, shiyan = world.take_offline(RECEIVER), world.take_offline(MAIN)
    context = browser.new_context(**DESKTOP)
    page = context.new_page()
    page.goto(served)
    accessible(page)  # the login form
    log_in(page, served, "dt-dianjiao")
    live(page)
    rows = page.locator("#alerts-body tr[data-alert]")
    expect(rows).to_have_count(2)

    # Filters: by school, by words, by state; each answer comes from the server.
    page.select_option("#filter-school_id", label="洞头区鹿西乡小学")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-alert", str(luxi))
    page.select_option("#filter-school_id", label="全部 all")
    page.fill("#filter-q", "shiyan")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-alert", str(shiyan))
    page.fill("#filter-q", "")
    page.select_option("#filter-state", "resolved")
    expect(page.locator("#alerts-body")).to_contain_text("没有符合条件的告警")
    page.select_option("#filter-state", "")
    page.select_option("#filter-severity", "critical")
    expect(rows).to_have_count(2)

    # Each notification's fate is on the row, with no click.
    row = page.locator(f"#alert-{luxi}")
    expect(row.locator("td.notices")).to_contain_text("告警 alert →")

    # Silence from the alert: a reason is required, then its notifications are held
    # back; the engine's next pass marks it muted and the page hears it live.
    row.get_by_role("button", name="静默 Silence").click()
    row.locator(".silence-form select").select_option("240")
    row.get_by_role("button", name="确认静默 Silence").click()
    expect(row).to_contain_text("请填写原因 / reason needed")
    accessible(page)  # the page, alerts and the open form
    row.get_by_label("静默原因 reason").fill("已报修 repair booked")
    row.get_by_role("button", name="确认静默 Silence").click()
    expect(row).to_contain_text("已静默至 silenced until")
    expect(row.get_by_role("button", name="确认 Ack")).to_be_visible()  # still to handle
    page.evaluate("window.reloadMark = 1")
    world.alerts.tick()
    expect(page.locator(f"#alert-{luxi} .muted")).to_contain_text("静默 muted")
    expect(page.locator(f"#alert-{shiyan} .muted")).to_have_count(0)
    assert page.evaluate("window.reloadMark") == 1  # no reload: the live stream
    silences = world.get("dt-dianjiao", "/api/v1/silences").json()
    assert [s["matchers"] for s in silences] == [
        {"rule": "device_offline", "device_id": RECEIVER}]
    no_sideways_scroll(page)
    page.locator("#alerts").screenshot(path=str(SCREENSHOTS / "desktop-1366x768-alerts.png"))
    context.close()


def test_wall_screen_and_phone_alerts(world: World, served: str, browser: Browser) -> None:
    today(world)
    world.take_offline(RECEIVER)
    context = browser.new_context(**WALL)
    page = context.new_page()
    page.goto(served + "/#wall")
    log_in(page, served + "/#wall", "dt-dianjiao")
    tiles = page.locator("#wall-grid article.tile")
    expect(tiles).to_have_count(2)  # 洞头's two classrooms, the faulty one first
    expect(tiles.first).to_have_attribute("data-state", "bad")
    expect(tiles.first).to_contain_text("洞头区鹿西乡小学")
    expect(tiles.first).to_contain_text("设备离线")
    expect(page.locator("#wall-lessons")).to_contain_text("数学")
    expect(page.locator("#app")).to_be_hidden()
    expect(page.locator(".wall-head .live-state")).to_have_attribute("data-live", "on")
    no_sideways_scroll(page)
    # Readable across a room: the tiles' text is large on a large screen.
    size = page.evaluate(FONT_SIZE)
    assert size >= 20, size
    accessible(page)
    page.screenshot(path=str(SCREENSHOTS / "wall-1920x1080.png"))
    page.set_viewport_size({"width": 3840, "height": 2160})  # a 4K wall: the type grows
    no_sideways_scroll(page)
    assert page.evaluate(FONT_SIZE) >= 2 * size * 0.9
    page.set_viewport_size(WALL["viewport"])
    # Live: the other end goes offline too, and its tile turns without a reload.
    world.take_offline(MAIN)
    expect(page.locator("#wall-grid article.tile[data-state='bad']")).to_have_count(2)
    context.close()

    phone = browser.new_context(**PHONE)
    page = phone.new_page()
    log_in(page, served + "/#wall", "dt-luxi-tech")
    expect(page.locator("#wall-grid article.tile")).to_have_count(1)
    no_sideways_scroll(page)
    page.screenshot(path=str(SCREENSHOTS / "phone-390x844-wall.png"), full_page=True)
    page.goto(served + "/")
    page.reload()
    live(page)
    expect(page.locator("#alerts-body tr[data-alert]")).to_have_count(1)
    no_sideways_scroll(page)
    accessible(page)
    page.locator("#alerts").screenshot(path=str(SCREENSHOTS / "phone-390x844-alerts.png"))
    phone.close()
