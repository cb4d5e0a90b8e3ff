"""The technician's phone hears a fault as it happens: a real agent on a simulated
classroom, through the real Mosquitto and the real ingest, loses its camera; the page,
already open at 390×844 (touch), shows the alert without a reload (the live event
stream) and counts it in the tab title until the technician touches the page; the firing
e-mail the test SMTP server got links the alert, and the link opens it."""

from __future__ import annotations

import re
from datetime import timedelta

from playwright.sync_api import Browser, expect

from agent.hardware.scenario import Fault
from tests.e2e.world import LUXI, LUXI_TECH, MORNING, STUDENT_CAMERA, LessonRow, World, wait_until
from tests.fleet.test_web_phone import PHONE, no_sideways_scroll
from tests.fleet.web_page import browser, log_in

__all__ = ["browser"]


def test_unplugged_camera_reaches_the_open_page_live_and_its_mail_link_opens_it(
    world: World, browser: Browser
) -> None:
    world.page_always()  # no lesson near: a camera fault would be held until the next one
    world.start_fleet(serve_http=True, link_alerts=True)
    url = world.config.alerts.base_url
    luxi = world.start_agent(LUXI)
    world.wait_reporting(LUXI)
    world.import_lessons(LessonRow(MORNING + timedelta(hours=1), "洞头区实验小学",
                                   ("洞头区鹿西乡小学",)))
    context = browser.new_context(**PHONE)
    page = context.new_page()
    log_in(page, url, "dt-luxi-tech")
    expect(page.locator("#live-state")).to_have_attribute("data-live", "on")
    page.evaluate("window.reloadMark = 1")  # gone if the page were reloaded

    luxi.apply(Fault("camera_unplugged", device=STUDENT_CAMERA))
    alert = wait_until("the camera alert to fire",
                       lambda: next(iter(world.alerts(rule="camera_missing")), None),
                       between=world.tick)
    row = page.locator(f"#alert-{alert.id}")
    expect(row).to_contain_text("摄像头")
    expect(row).to_contain_text(LUXI)
    assert page.evaluate("window.reloadMark") == 1
    expect(page).to_have_title(re.compile(r"^\([1-9]\d*\) 同步课堂设备监测"))
    no_sideways_scroll(page)
    page.locator("header h1").tap()  # the technician is looking: nothing unread
    expect(page).to_have_title(re.compile(r"^同步课堂设备监测"))

    mail = world.wait_mail(LUXI_TECH, "firing", alert.id)
    link = re.search(r"http://127\.0\.0\.1:\d+/#alert-\d+", mail.message.get_content())
    assert link is not None and link.group(0) == f"{url}/#alert-{alert.id}"
    tab = context.new_page()  # same browser: the session cookie, no new login
    tab.goto(link.group(0))
    linked = tab.locator(f"#alert-{alert.id}")
    expect(linked).to_have_class("linked")
    expect(linked).to_be_in_viewport()
    context.close()
