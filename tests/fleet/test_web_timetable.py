"""The timetable panel in real Chromium: an import is previewed by date and classroom and
written only when confirmed; a lesson moved on the page shows up as a conflict in the
next import's preview, and that import keeps it; a bad file is refused at the preview."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from playwright.sync_api import Browser, expect
from sqlalchemy import select

from fleet.db.base import session_scope
from fleet.db.models import Lesson
from tests.fleet.api_world import World, world
from tests.fleet.web_page import browser, log_in, served

__all__ = ["browser", "served", "world"]

SHANGHAI = ZoneInfo("Asia/Shanghai")
HEAD = "kind,weekday,date,start,end,subject,grade,teacher,main_school,main_classroom,receivers,mode"
DT_MON = ("weekly,1,,08:00,08:40,数学,二年级,林晓红,洞头区实验小学,同步课堂教室,"
          "洞头区鹿西乡小学,live")
FILE = {"name": "课表.csv", "mimeType": "text/csv",
        "buffer": ("\n".join([HEAD, DT_MON]) + "\n").encode()}


def _imported(w: World) -> list[datetime]:
    with session_scope(w.sessions) as s:
        return [x.starts_at.astimezone(SHANGHAI) for x in s.scalars(
            select(Lesson).where(Lesson.subject == "数学", Lesson.teacher == "林晓红",
                                 Lesson.cancelled.is_(False)).order_by(Lesson.starts_at))]


def test_import_preview_is_confirmed_on_the_page_and_a_moved_lesson_is_flagged(
        world: World, served: str, browser: Browser) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    log_in(page, served, "dt-dianjiao")

    def preview() -> None:
        page.set_input_files("#tt-file", files=[FILE])
        page.fill("#tt-semester", "2025学年第二学期")
        page.fill("#tt-start", "2026-03-02")
        page.fill("#tt-end", "2026-03-29")
        page.click("#timetable-form button[type=submit]")
        expect(page.locator("#timetable-summary")).to_be_visible()

    preview()
    added = page.locator("#timetable-preview tr.change.added")
    expect(added).to_have_count(4)  # the Mondays of March 2026
    expect(added.first).to_contain_text("2026-03-02")
    expect(added.first).to_contain_text("洞头区实验小学/同步课堂教室")
    expect(page.locator("#timetable-summary")).to_contain_text("新增 added 4")
    assert _imported(world) == [], "a preview writes nothing"

    page.click("#timetable-apply")
    expect(page.locator("#timetable-preview")).to_contain_text("已导入 / imported")
    assert [d.day for d in _imported(world)] == [2, 9, 16, 23]

    # Monday 9 March's lesson moves to 14:00 on the page.
    page.fill("#tt-edit-day", "2026-03-09")
    page.dispatch_event("#tt-edit-day", "change")
    row = page.locator("#timetable-edits[data-day='2026-03-09'] tr", has_text="数学")
    expect(row).to_have_count(1)
    row.locator("input[type=time]").fill("14:00")
    row.get_by_role("button", name="调整 Move").click()
    expect(page.locator("#timetable-edits tr", has_text="14:00")).to_have_count(1)
    assert [(d.day, d.hour) for d in _imported(world)] == [(2, 8), (9, 14), (16, 8), (23, 8)]
    # and a make-up lesson is added that afternoon, Luxi teaching Dongtou.
    page.fill("#tt-add-subject", "科学")
    page.fill("#tt-add-start", "16:00")
    page.fill("#tt-add-end", "16:40")
    page.select_option("#tt-add-main", label="洞头区鹿西乡小学 同步课堂教室")
    page.select_option("#tt-add-receiver", label="洞头区实验小学 同步课堂教室")
    page.click("#tt-add button[type=submit]")
    expect(page.locator("#timetable-edits tr", has_text="科学")).to_contain_text("16:00")
    with session_scope(world.sessions) as s:
        added = s.scalars(select(Lesson).where(Lesson.subject == "科学")).one()
        assert (added.edit, added.starts_at.astimezone(SHANGHAI).hour) == ("added", 16)

    # The same file again: the preview flags the moved lesson instead of undoing it.
    preview()
    conflict = page.locator("#timetable-preview tr.change.conflict")
    expect(conflict).to_have_count(1)
    expect(conflict).to_contain_text("2026-03-09")
    expect(conflict).to_contain_text("the change is kept")
    expect(page.locator("#timetable-preview tr.change.added")).to_have_count(0)
    page.click("#timetable-apply")
    expect(page.locator("#timetable-preview")).to_contain_text("冲突 conflicts 1")
    assert [(d.day, d.hour) for d in _imported(world)] == [(2, 8), (9, 14), (16, 8), (23, 8)]

    # A bad file is refused at the preview, row and column named; nothing to apply.
    bad = DT_MON.replace("08:40", "25:99").replace("林晓红", "叶青")
    page.set_input_files("#tt-file", files=[FILE | {
        "buffer": ("\n".join([HEAD, bad]) + "\n").encode()}])
    page.click("#timetable-form button[type=submit]")
    refusal = page.locator("#timetable-preview pre.msg.error")
    expect(refusal).to_contain_text("第 2 行 / line 2 [end]")
    expect(page.locator("#timetable-apply")).to_have_count(0)
    assert [(d.day, d.hour) for d in _imported(world)] == [(2, 8), (9, 14), (16, 8), (23, 8)]
