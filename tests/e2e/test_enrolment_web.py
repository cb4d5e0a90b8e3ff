"""Enrolment, rotation and revocation from the technicians' page, in real Chromium, on
the real fleet behind a Mosquitto with the dynamic security plugin: the code the page
shows enrols a real ``syncclass-agent``, and a revoke from the page drops it."""

from __future__ import annotations

from dataclasses import replace

from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from fleet.db.base import session_scope
from fleet.db.models import EnrolCode
from fleet.enrolment import code_hash
from tests.e2e.test_enrolment import COUNTY_TECH, LUXI_SCHOOL, SCHOOL_TECH, Site, site
from tests.e2e.world import wait_until
from tests.fleet.test_enrolment_cli import CODE
from tests.fleet.web_page import browser, log_in

__all__ = ["browser", "site"]


def _page(browser: Browser, site: Site, username: str) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page, site.url, username)
    expect(page.locator("#app")).to_be_visible()
    return page


def _codes_for(site: Site, device_id: str) -> list[str]:
    with session_scope(site.fleet.sessions) as session:
        return list(session.scalars(select(EnrolCode.code_hash)
                                    .where(EnrolCode.device_id == device_id)))


def test_county_technician_enrols_rotates_and_revokes_from_the_page(
    site: Site, browser: Browser
) -> None:
    page = _page(browser, site, COUNTY_TECH)
    enrol = page.locator("#enrol")
    enrol.locator("#enrol-classroom").select_option(str(site.classroom_id()))
    enrol.get_by_role("button", name="生成注册码 Create enrolment code").click()
    expect(enrol.locator(".enrol-code")).to_have_text(CODE)
    code = enrol.locator(".enrol-code").inner_text()
    expect(enrol.locator(".command")).to_have_text(
        f"syncclass-agent enrol {code} --fleet {site.url}")
    expect(enrol).to_contain_text(LUXI_SCHOOL)
    expect(enrol).to_contain_text("有效期至 expires")

    # The code typed on the mini-PC: the real `syncclass-agent enrol`, then its agent runs.
    device_id, agent = site.enrolled(code, "luxi-from-page")
    site.wait_telemetry(device_id)
    page.reload()
    row = page.locator(f"tr[data-device='{device_id}']")
    expect(row).to_contain_text("在线 online")

    # Rotating shows a re-enrol code for this device; only its hash is stored, for it.
    row.get_by_role("button", name="更换凭据 Rotate credentials").click()
    expect(row.locator(".enrol-code")).to_have_text(CODE)
    rotated = row.locator(".enrol-code").inner_text()
    assert _codes_for(site, device_id) == [code_hash(rotated)]
    expect(row.locator(".command")).to_contain_text(f"syncclass-agent enrol {rotated}")

    # Revoking needs a reason, then the broker drops the agent and refuses it.
    row.get_by_role("button", name="吊销 Revoke").click()
    row.get_by_role("button", name="确认吊销 Confirm revoke").click()
    expect(row).to_contain_text("请填写原因")
    assert site.api("GET", f"/api/v1/devices/{device_id}").json()["enabled"] is True
    row.get_by_placeholder("吊销原因 reason (e.g. 主机被盗 stolen)").fill("主机被盗 stolen")
    row.get_by_role("button", name="确认吊销 Confirm revoke").click()
    expect(row).to_contain_text("已吊销 / revoked")
    wait_until("the broker dropping the agent",
               lambda: agent.said("lost the connection") and agent.said("Administrative action"))
    wait_until("the agent's next connect refused", lambda: agent.said("refused user"))

    # The fleet no longer takes the device's messages (its Last Will included), so its
    # last state said online: the device reads disabled, in the API and on the page.
    device = site.api("GET", f"/api/v1/devices/{device_id}").json()
    assert device["enabled"] is False
    assert device["health"]["online"] is False
    expect(row).to_contain_text("已停用 disabled")
    expect(row).not_to_contain_text("在线 online")
    expect(row.get_by_role("button", name="吊销 Revoke")).to_have_count(0)
    audit = site.api("GET", f"/api/v1/audit?device_id={device_id}").json()
    assert [(e["actor"], e["reason"]) for e in audit if e["action"] == "revoke"] == [
        (COUNTY_TECH, "主机被盗 stolen")]


def test_school_technician_sees_no_enrolment_controls(site: Site, browser: Browser) -> None:
    page = _page(browser, site, SCHOOL_TECH)
    expect(page.locator("#devices-body tr[data-device]").first).to_be_visible()
    expect(page.locator("#enrol")).to_be_hidden()
    expect(page.get_by_role("button", name="吊销 Revoke")).to_have_count(0)
    expect(page.get_by_role("button", name="更换凭据 Rotate credentials")).to_have_count(0)
    # The API refuses them anyway; the page only spares them the button.
    refused = site.api("POST", f"/api/v1/classrooms/{site.classroom_id()}/enrol-codes",
                       user=SCHOOL_TECH, body={})
    assert refused.status_code == 403


def test_the_command_names_the_configured_fleet_url(site: Site, browser: Browser) -> None:
    # fleet.toml's [enrol] fleet_url, as behind a reverse proxy: the page is reached on
    # 127.0.0.1, the mini-PCs reach the fleet by its public name.
    assert site.fleet.enrolment is not None
    public = "https://fleet.dongtou.example.cn"
    site.fleet.enrolment.config = replace(site.fleet.enrolment.config, fleet_url=public + "/")
    page = _page(browser, site, COUNTY_TECH)
    page.get_by_role("button", name="生成注册码 Create enrolment code").click()
    code = page.locator("#enrol .enrol-code")
    expect(code).to_have_text(CODE)
    expect(page.locator("#enrol .command")).to_have_text(
        f"syncclass-agent enrol {code.inner_text()} --fleet {public}")
