"""The technicians' page in real Chromium against the real app served by uvicorn:
log in, see today's lesson with its readiness and an open alert, acknowledge it, try a
reboot and read why it was refused; resolve an acknowledged alert and delete a
maintenance window."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from playwright.sync_api import Browser, expect

from agent import contract
from agent.contract import DEFAULT_PREFIX, Kind
from fleet.ingest.strangers import Strangers
from fleet.ingest.validate import Validator, load_enabled_devices
from tests.fleet.api_world import NOW, World, world
from tests.fleet.delivery_helpers import COUNTY, DEVICE, REFUSAL, TECH, dispatcher, settle
from tests.fleet.smtp import SmtpServer
from tests.fleet.web_page import browser, log_in, served

__all__ = ["browser", "served", "world"]

# Where the last screenshot is kept for a person to look at (tmp_path is cleaned up).
STRANGER = "dongtou-stranger-sync9"  # a broker account the inventory lacks
SHOT = Path(os.environ.get("SYNCCLASS_WEB_SHOT", "/tmp/syncclass-web.png"))


def test_technician_checks_the_morning_and_acknowledges(
    world: World, served: str, browser: Browser, tmp_path: Path
) -> None:
    lesson = world.add_lesson("洞头区实验小学", ["洞头区鹿西乡小学"], NOW + timedelta(minutes=10))
    for device in ("dongtou-shiyan-sync1", "dongtou-luxi-sync1"):
        world.add_check(lesson, device, "pass", NOW - timedelta(minutes=5))
    alert_id = world.take_offline("dongtou-luxi-sync1")

    page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page, served, "dt-luxi-tech", "wrong-password")
    expect(page.locator("#login-error")).to_contain_text("用户名或密码错误")
    log_in(page, served, "dt-luxi-tech")

    row = page.locator(f"[data-lesson='{lesson}']")
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


def test_county_technician_resolves_and_deletes_a_window(
    world: World, served: str, browser: Browser
) -> None:
    alert_id = world.take_offline("dongtou-luxi-sync1")
    acked = world.post(
        "dt-luxi-tech", f"/api/v1/alerts/{alert_id}/ack", json={"comment": "叶老师在处理"}
    )
    assert acked.status_code == 200, acked.text
    luxi_school = world.get("dt-luxi-tech", "/api/v1/me").json()["school_ids"][0]
    made = world.post(
        "dt-dianjiao",
        "/api/v1/maintenance-windows",
        json={
            "name": "鹿西周末夜间",
            "weekdays": [5, 6],
            "start_time": "22:00",
            "end_time": "06:00",
            "matchers": {"school_id": str(luxi_school)},
        },
    )
    assert made.status_code == 201, made.text
    window_row = f"tr[data-window='{made.json()['id']}']"

    # The school technician sees the window but does not get to delete it.
    school_page = browser.new_page(locale="zh-CN")
    log_in(school_page, served, "dt-luxi-tech")
    expect(school_page.locator(window_row)).to_contain_text("周六 Sat 周日 Sun")
    expect(school_page.locator(window_row).get_by_role("button")).to_have_count(0)

    page = browser.new_page(locale="zh-CN")
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page, served, "dt-dianjiao")
    window = page.locator(window_row)
    expect(window).to_contain_text("22:00–06:00 (次日 next day)")
    alert = page.locator(f"tr[data-alert='{alert_id}']")
    alert.get_by_role("button", name="已解决 Resolve").click()
    alert.get_by_role("button", name="标记已解决 Mark resolved").click()
    expect(alert).to_contain_text("请填写说明")
    alert.get_by_placeholder("解决说明 how it was fixed").fill("设备已送修 sent for repair")
    alert.get_by_role("button", name="标记已解决 Mark resolved").click()
    expect(page.locator("#alerts-body")).to_contain_text("没有未处理的告警")
    window.get_by_role("button", name="删除 Delete").click()
    expect(page.locator("#maintenance-body")).to_contain_text("没有维护时段")

    resolved = world.get("admin", f"/api/v1/alerts/{alert_id}").json()
    assert (resolved["state"], resolved["events"][-1]["actor"]) == ("resolved", "dt-dianjiao")
    assert world.get("admin", "/api/v1/maintenance-windows").json() == []


def test_county_technician_adds_a_window_for_the_county(
    world: World, served: str, browser: Browser
) -> None:
    page = browser.new_page(locale="zh-CN")
    log_in(page, served, "dt-dianjiao")
    form = page.locator("#window-form")
    form.get_by_placeholder("名称 name（如 夜间 nights）").fill("洞头夜间")
    form.get_by_label("周一 Mon").check()
    form.get_by_label("周五 Fri").check()
    form.locator("input[name=start_time]").fill("22:00")
    form.locator("input[name=end_time]").fill("06:00")
    form.get_by_role("button", name="添加维护时段 Add window").click()
    expect(page.locator("#maintenance-body")).to_contain_text("洞头夜间")
    [made] = world.get("dt-dianjiao", "/api/v1/maintenance-windows").json()
    me = world.get("dt-dianjiao", "/api/v1/me").json()
    assert (made["weekdays"], made["start_time"], made["end_time"]) == ([0, 4], "22:00", "06:00")
    assert made["matchers"] == {"county_id": str(me["county_id"])}

    school_page = browser.new_page(locale="zh-CN")
    log_in(school_page, served, "dt-luxi-tech")
    expect(school_page.locator("#maintenance-body")).to_contain_text("洞头夜间")
    expect(school_page.locator("#window-form")).to_have_count(0)


def test_a_locked_out_technician_is_told_how_long_to_wait(
    world: World, served: str, browser: Browser
) -> None:
    for _ in range(5):
        wrong = {"username": "dt-luxi-tech", "password": "wrong-password"}
        assert world.client.post("/api/v1/auth/login", json=wrong).status_code == 401
    page = browser.new_page(locale="zh-CN")
    log_in(page, served, "dt-luxi-tech")
    expect(page.locator("#login-error")).to_contain_text("登录失败次数过多，请 1 秒后再试")
    world.clock.advance(seconds=1)
    log_in(page, served, "dt-luxi-tech")
    expect(page.locator("#login-error")).to_be_hidden()
    expect(page.locator("#login")).to_be_hidden()


def test_refused_and_never_connected_devices_show_on_the_page(
    world: World, served: str, browser: Browser
) -> None:
    strangers = Strangers(world.sessions, world.clock, report=world.alerts.stranger)
    world.services.strangers = strangers.list
    validator = Validator(DEFAULT_PREFIX, lambda: load_enabled_devices(world.sessions),
                          on_unknown=strangers.seen)
    for seq in range(1, 4):  # what the agent sends, three times: one entry
        body = {**contract.envelope(STRANGER, seq, world.clock()), "interval": 15.0,
                "sections": {}}
        validator.check(contract.topic(DEFAULT_PREFIX, STRANGER, Kind.TELEMETRY),
                        contract.encode(body))

    page = browser.new_page(locale="zh-CN")
    log_in(page, served, "admin")
    row = page.locator(f"tr[data-stranger='{STRANGER}']")
    expect(row).to_contain_text("未登记 not in the inventory")
    expect(row.locator("td").nth(3)).to_have_text("3")
    expect(page.locator("tr[data-stranger]")).to_have_count(1)
    # A classroom PC the fleet never heard from says so, not "unknown".
    expect(page.locator("tr[data-device='yueqing-longxi-sync1']")).to_contain_text(
        "从未连接 never connected")

    school = browser.new_page(locale="zh-CN")  # a placeless stranger is the admins' business
    log_in(school, served, "dt-luxi-tech")
    expect(school.locator("tr[data-device='dongtou-luxi-sync1']")).to_be_visible()
    expect(school.locator("#strangers")).to_be_hidden()


def test_alert_shows_what_became_of_its_notifications(
    world: World, served: str, browser: Browser, smtp_server: SmtpServer
) -> None:
    smtp_server.refuse(TECH, REFUSAL)
    outbox = dispatcher(world, smtp_server)
    alert_id = world.take_offline(DEVICE)
    settle(world, outbox)  # the technician's e-mail is refused for good: escalated
    settle(world, outbox)  # the county's escalation e-mail goes out

    page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    log_in(page, served, "dt-dianjiao")
    failed = page.locator("#failed-body")
    expect(failed).to_contain_text(f"告警 alert #{alert_id}")
    expect(failed).to_contain_text(TECH)
    expect(failed.locator("li")).to_have_count(2)  # the alert and the escalation to them

    expect(page.locator(f"tr[data-alert='{alert_id}']")).to_contain_text("已升级至县电教 escalated")
    # Every notification's fate is on the alert's row, with no click.
    deliveries = page.locator(f"tr[data-alert='{alert_id}'] td.notices")
    lines = deliveries.locator("li.delivery")
    expect(lines).to_have_count(3)
    expect(lines.nth(0)).to_contain_text("送达失败 failed")
    expect(lines.nth(0)).to_contain_text("告警 alert → 邮件 e-mail " + TECH)
    expect(lines.nth(0)).to_contain_text("原因 reason:")
    expect(lines.nth(0)).to_contain_text("550")
    expect(lines.nth(2)).to_contain_text("已送达 sent")
    expect(lines.nth(2)).to_contain_text("升级 escalation → 邮件 e-mail " + COUNTY)
    # And stays there through a refresh.
    page.evaluate("refresh()")
    expect(deliveries.locator("li.delivery")).to_have_count(3)
    shot = SHOT.with_name("syncclass-web-deliveries.png")
    page.screenshot(path=str(shot), full_page=True)
