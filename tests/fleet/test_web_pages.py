"""The device, classroom, operations and reports pages in real Chromium at 1366×768 and
390×844 (touch), against the served app: what a simulated agent sent through the real
broker and ingest is drawn (peripherals against its baseline, charts of its network and
temperature), a re-run check's answer shows when it arrives, alerts open their
timeline, reports read in percentages and minutes, and a school technician sees and
edits only what is theirs.  ``make screenshots`` keeps a picture of each page."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from agent.contract import DEFAULT_PREFIX, Kind, encode, envelope, topic
from agent.hardware.scenario import Fault
from agent.hardware.simulated import SimulatedHardware
from agent.probes.base import ProbeContext
from agent.probes.runner import ProbeRunner
from agent.thresholds import Thresholds
from fleet.actions.signer import Signer
from fleet.broker import Mosquitto
from fleet.checks.scheduler import CheckScheduler
from fleet.history import TelemetryHistory
from fleet.ingest import IngestConfig, create_ingest
from tests.fleet.api_world import NOW, World, world
from tests.fleet.checks_helpers import MqttDevice, check_payload
from tests.fleet.ingest_helpers import DeviceClient, status
from tests.fleet.test_web_phone import (
    DESKTOP,
    MAIN,
    PHONE,
    RECEIVER,
    SCREENSHOTS,
    no_sideways_scroll,
    today,
    unplugged_camera_findings,
)
from tests.fleet.web_page import browser, log_in, served
from tests.waiting import wait_until

__all__ = ["browser", "served", "world"]

SIZES = {"desktop": DESKTOP, "phone": PHONE}
SHOT = {"desktop": "desktop-1366x768", "phone": "phone-390x844"}  # screenshot name prefixes
SAMPLES = 12  # telemetry every 10 minutes over the two hours before NOW


@pytest.fixture
def fed(world: World, served: str, broker: Mosquitto) -> Iterator[list[float]]:
    """The receiving classroom's agent (simulated hardware, the agent's own probes) sends
    its birth and two hours of telemetry through the broker to the fleet's real ingest,
    with the device states, the fleet's own history and the check scheduler behind it.
    Its first camera is unplugged after the birth.  Yields the RTTs it reported."""
    assert world.services.actions is not None
    history = TelemetryHistory(world.clock)
    world.services.history = history
    scheduler = CheckScheduler(world.sessions, world.services.actions, clock=world.clock)
    ingest = create_ingest(
        IngestConfig(url=broker.url, share_group="", client_id="pages-ingest",
                     reconnect_min_s=0.05, reconnect_max_s=0.5),
        world.sessions, [world.states, history, scheduler, world.services.actions],
        clock=world.clock)
    ingest.start()
    assert ingest.wait_ready(10)
    hardware = SimulatedHardware()
    cameras = [c.id for c in hardware.cameras()]
    runner = ProbeRunner(ProbeContext(hardware, Thresholds(), {"peer": "10.20.0.1"}))
    agent = DeviceClient(broker, RECEIVER)
    inventory = {**hardware.inventory(),
                 "agent": {"capabilities": [], "expected": {"cameras": cameras}}}
    agent.send(Kind.STATUS, status(RECEIVER, "online", 1, 0, inventory=inventory,
                                   interval=15) | envelope(RECEIVER, 0, NOW - timedelta(hours=3)),
               retain=True)
    hardware.apply(Fault("camera_unplugged", device=cameras[0]))
    rtts = []
    for i in range(SAMPLES):
        rtt = 20.0 + 7 * i
        rtts.append(rtt)
        hardware.apply(Fault("rtt", value=rtt))
        hardware.apply(Fault("overheat", value=60.0 + i))
        when = NOW - timedelta(minutes=10 * (SAMPLES - i))
        agent.send(Kind.TELEMETRY, envelope(RECEIVER, i + 1, when) | {
            "interval": 15, "sections": runner.collect().sections})
    assert wait_until(lambda: len(next((s.points for s in history.read(RECEIVER, "day", NOW)
                                        if s.field == "temp_c"), [])) == SAMPLES, timeout=10)
    agent.close()
    yield rtts
    ingest.close()


def chart_values(page: Page, field: str) -> list[list[float]]:
    """The (x, y) of each point of a drawn chart's line, in SVG units."""
    points = page.locator(f"figure[data-field='{field}'] polyline").first.get_attribute("points")
    assert points
    return [[float(v) for v in p.split(",")] for p in points.split()]


@pytest.mark.parametrize("size", SIZES)
def test_device_page_draws_what_the_agent_sent_and_shows_a_rerun_check_answer(
    world: World, served: str, fed: list[float], browser: Browser, broker: Mosquitto,
    tmp_path: Path, size: str
) -> None:
    lessons = today(world)
    alert_id = world.take_offline(RECEIVER)
    world.post("dt-luxi-tech", f"/api/v1/alerts/{alert_id}/ack", json={"comment": "叶老师在处理"})
    context = browser.new_context(**SIZES[size])
    page = context.new_page()
    log_in(page, served, "dt-luxi-tech")
    expect(page.locator("#lessons-body article.lesson")).to_have_count(3)
    # From today's lesson card to its receiving classroom, and on to its device.
    page.locator(f"article[data-lesson='{lessons['next']}'] a.room").last.click()
    expect(page.locator("#classroom-head")).to_contain_text("洞头区鹿西乡小学")
    expect(page.locator("#lessons")).to_be_hidden()
    card = page.locator(f".device-card[data-device='{RECEIVER}']")
    expect(card.locator("li[data-peripheral]", has_text="缺失 missing")).to_have_count(1)
    calendar = page.locator("#classroom-head .calendar .command")
    ics = page.request.get(calendar.inner_text())
    assert ics.status == 200 and "BEGIN:VCALENDAR" in ics.text()
    no_sideways_scroll(page)
    page.screenshot(path=str(SCREENSHOTS / f"{SHOT[size]}-classroom.png"), full_page=True)

    card.locator(f"a[href='#device-{RECEIVER}']").click()
    expect(page.locator("#device-head")).to_contain_text(RECEIVER)
    # The camera the agent's baseline names is missing; the others are there.
    missing = page.locator("#device-peripherals li[data-peripheral]",
                           has_text="缺失 missing")
    expect(missing).to_have_count(1)
    # The last check with every finding, in plain words.
    expect(page.locator("#device-checks .check").first).to_contain_text("摄像头未连接")
    # The alert's timeline: fired, then acknowledged by the technician.
    alert = page.locator(f"#device-alerts li[data-alert='{alert_id}']")
    alert.get_by_role("button", name="时间线 Timeline").click()
    expect(alert.locator("ul.timeline")).to_contain_text("告警 fired")
    expect(alert.locator("ul.timeline")).to_contain_text("已确认 acknowledged · dt-luxi-tech")

    # When the overview refreshes (live or timed), the alert follows with its timeline open.
    resolved = world.post("dt-luxi-tech", f"/api/v1/alerts/{alert_id}/resolve",
                          json={"comment": "网线已插好"})
    assert resolved.status_code == 200, resolved.text
    page.evaluate("refresh()")
    expect(alert).to_contain_text("已恢复 resolved")
    expect(alert.locator("ul.timeline")).to_contain_text("已恢复 resolved · dt-luxi-tech")

    # The charts: one point per 10-minute report (5-minute buckets), heights as sent.
    expect(page.locator("#device-charts")).to_contain_text("本服务保存的近期记录")
    rtt = chart_values(page, "rtt_ms")
    assert len(rtt) == SAMPLES
    assert [p[0] for p in rtt] == sorted(p[0] for p in rtt)
    axis = float(page.locator("figure[data-field='rtt_ms'] line.grid").first.get_attribute("y1")
                 or "nan")  # the zero line
    heights = [axis - p[1] for p in rtt]
    assert all(b > a for a, b in itertools.pairwise(heights))
    assert heights[-1] / heights[0] == pytest.approx(fed[-1] / fed[0], rel=0.02)
    assert len(chart_values(page, "temp_c")) == SAMPLES
    page.screenshot(path=str(SCREENSHOTS / f"{SHOT[size]}-device.png"), full_page=True)
    page.locator("#device-charts button[data-span='week']").click()
    expect(page.locator("#device-charts button[data-span='week']")).to_have_attribute(
        "aria-pressed", "true")
    assert len(chart_values(page, "rtt_ms")) in (2, 3)  # two hours in 1-hour buckets
    no_sideways_scroll(page)

    # Re-run the check: refused while the lesson is on (the reason is shown); once the
    # lessons are over the agent answers, and the page shows it without a reload.
    signer = Signer.from_file(tmp_path / "fleet.key")
    device = MqttDevice(broker, RECEIVER, signer.public_key_b64, world.clock, tmp_path)
    rerun = page.locator("#device-checks").get_by_role("button", name="重新检查 Re-run check")
    rerun.click()
    expect(page.locator("#device-checks .rerun-status")).to_contain_text(
        "被拒绝 refused: 教室正在上同步课堂")
    world.clock.advance(minutes=80)
    rerun.click()
    command = device.next_command(timeout=10)
    assert command["name"] == "run-check"
    # Answered at the fleet's (test) time, as the agent's own clock would stamp them.
    for kind, answer in ((Kind.CMD_RESULT, {"id": command["id"], "ok": True}),
                         (Kind.CHECK, check_payload(command, "fail", unplugged_camera_findings()))):
        device.seq += 1
        device.client.publish(topic(DEFAULT_PREFIX, RECEIVER, kind), encode(
            answer | envelope(RECEIVER, device.seq, world.clock())), qos=1).wait_for_publish(5)
    expect(page.locator("#device-checks .rerun-status")).to_contain_text(
        "检查结果已到 / result arrived: 未通过 fail", timeout=15_000)
    expect(page.locator("#device-checks .check").first).to_contain_text("手动 manual")
    device.close()

    # Another school's device is not this technician's to see.
    page.goto(f"{served}/#device-{MAIN}")
    expect(page.locator("#page .msg.error")).to_be_visible()
    expect(page.locator("#device-head")).to_have_count(0)
    context.close()


@pytest.mark.parametrize("size", SIZES)
def test_reports_and_operations_pages_in_words_and_within_scope(
    world: World, served: str, browser: Browser, size: str
) -> None:
    today(world)
    alert_id = world.take_offline(RECEIVER)
    world.clock.advance(seconds=150)
    acked = world.post("dt-dianjiao", f"/api/v1/alerts/{alert_id}/ack", json={"comment": "在查"})
    assert acked.status_code == 200, acked.text
    context = browser.new_context(**SIZES[size])
    page = context.new_page()
    log_in(page, served, "dt-dianjiao")
    page.get_by_role("link", name="报表 Reports").click()
    rows = page.locator("#report-result tr[data-unit]")
    expect(rows.first).to_be_visible()
    expected = world.get("dt-dianjiao", "/api/v1/reports/county").json()
    assert rows.count() == len(expected)
    text = page.locator("#report-result").inner_text()
    mtta = expected[0]["mtta_s"]
    assert mtta is not None and f"{mtta / 60:.1f} 分钟 min" in text
    assert "%" in text and "1.0000" not in text
    expect(page.locator("#report-result svg.chart.bars").first).to_be_visible()
    page.select_option("#report-level", "school")
    expect(rows).to_have_count(len(world.get("dt-dianjiao", "/api/v1/reports/school").json()))
    csv = page.request.get(served + (page.locator("#report-csv").get_attribute("href") or ""))
    assert csv.status == 200 and csv.headers["content-type"].startswith("text/csv")
    no_sideways_scroll(page)
    page.screenshot(path=str(SCREENSHOTS / f"{SHOT[size]}-reports.png"), full_page=True)

    # Operations: the county technician adds a classroom to a school of their county.
    page.get_by_role("link", name="运维 Operations").click()
    add = page.locator("#add-classroom")
    add.locator("select[name=school_id]").select_option(label="洞头区鹿西乡小学")
    add.get_by_placeholder("教室名称 classroom name").fill("四(1)班")
    add.get_by_role("button", name="添加教室 Add classroom").click()
    added = page.locator("#ops-inventory tr[data-room]", has_text="四(1)班")
    expect(added).to_have_count(1)
    added.get_by_role("button", name="改名 Rename").click()
    added.get_by_label("新名称 new name").fill("四(2)班")
    added.get_by_role("button", name="保存 Save").click()
    expect(page.locator("#ops-inventory tr[data-room]", has_text="四(2)班")).to_have_count(1)
    expect(page.locator("#ops-inventory tr[data-room]", has_text="四(1)班")).to_have_count(0)
    expect(page.locator("#ops-audit")).to_be_visible()
    expect(page.locator("#ops-calendar .command")).to_contain_text("/calendar.ics?token=")
    no_sideways_scroll(page)
    page.screenshot(path=str(SCREENSHOTS / f"{SHOT[size]}-operations.png"), full_page=True)
    context.close()

    # A school technician reads the inventory of their school only, with no forms.
    tech = browser.new_context(**SIZES[size])
    page = tech.new_page()
    log_in(page, served, "dt-luxi-tech")
    page.get_by_role("link", name="运维 Operations").click()
    expect(page.locator("#ops-inventory tr[data-inventory-device]")).to_have_count(1)
    expect(page.locator(f"tr[data-inventory-device='{RECEIVER}']")).to_be_visible()
    expect(page.locator("#add-classroom")).to_have_count(0)
    tech.close()
