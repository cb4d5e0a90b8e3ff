// The timetable panel (admins and county technicians): import a school's schedule with a
// preview of what would change — added, changed, cancelled, and conflicts with changes
// made by hand, by date and classroom — that the person confirms before anything is
// written; and change one lesson on the day (cancel it, or move it to another time or
// room).  Loaded after app.js and pages/parts.js and built with their helpers (el, api, csrf,
// table, badge, message, Parts.section); app.js calls renderTimetable() once the person
// is known.
"use strict";

const CHANGE = { added: "新增 added", changed: "变更 changed", cancelled: "取消 cancelled",
                 conflict: "冲突 conflict" };
const CHANGE_CLASS = { added: "ok", changed: "warn", cancelled: "failed", conflict: "not_ready" };
const JOB_POLL_MS = 1000;

function shanghaiToday() {
  return new Intl.DateTimeFormat("sv-SE", { timeZone: "Asia/Shanghai" }).format(new Date());
}
const JOB_POLLS = 600;  // a large file's job is given ten minutes

function timetableBody() {
  let section = document.getElementById("timetable");
  if (!section) {
    section = Parts.section("timetable", "课表 ", "Timetable", el("div", { id: "timetable-body" }));
    document.getElementById("app").append(section);
  }
  return document.getElementById("timetable-body");
}

// A refused file: each bad row with where it is, as the API lists them.
function refusalText(body, status) {
  if (body && Array.isArray(body.detail) && body.detail.some(d => d.line !== undefined)) {
    const rows = body.detail.map(d => (d.sheet ? d.sheet + "!" : "") + "第 " + d.line + " 行 / line "
      + d.line + (d.column ? " [" + d.column + "]" : "") + "：" + d.msg);
    const more = body.errors_total > rows.length
      ? ["……共 " + body.errors_total + " 处 / " + body.errors_total + " in all"] : [];
    return ["课表未导入 / timetable not imported", ...rows, ...more].join("\n");
  }
  return describe(body, status);
}

async function postImport(data) {
  const response = await fetch(API + "/timetable/import", {
    method: "POST", headers: { "X-CSRF-Token": csrf() || "" }, body: data,
  });
  if (response.status === 401) { leave(); throw new Error("登录已失效 / please log in again"); }
  let body = await response.json();
  if (response.status === 202) {  // a large file: imported (or previewed) as a job
    for (let i = 0; i < JOB_POLLS && body.state !== "done" && body.state !== "refused"
         && body.state !== "failed"; i++) {
      await new Promise(resolve => setTimeout(resolve, JOB_POLL_MS));
      body = await api("GET", "/timetable/imports/" + body.id);
    }
    if (body.state !== "done") throw new Error(refusalText(body.problem, body.status));
    return body.result;
  }
  if (!response.ok) throw new Error(refusalText(body, response.status));
  return body;
}

function counts(result) {
  return result.schedule + " · " + result.semester + "：新增 added " + result.created
    + "，变更 changed " + result.updated + "，取消 cancelled " + result.removed
    + "，冲突 conflicts " + result.conflicts + "，不变 unchanged " + result.unchanged;
}

function previewTable(result) {
  if (!result.changes.length) return empty("没有变化 / nothing changes");
  const rows = result.changes.map(c => el("tr", { class: "change " + c.change },
    el("td", {}, c.day), el("td", {}, c.classroom), el("td", {}, c.starts + "–" + c.ends),
    el("td", {}, c.subject), el("td", {}, badge(CHANGE_CLASS[c.change], CHANGE[c.change])),
    el("td", {}, c.detail)));
  const shown = result.created + result.updated + result.removed + result.conflicts;
  return el("div", {},
    table(["日期 Date", "教室 Classroom", "时间 Time", "课程 Lesson", "变化 Change", "说明 Detail"], rows),
    shown > rows.length ? el("p", { class: "sub" }, "仅列出前 " + rows.length + " 项 / only the first "
      + rows.length + " are listed") : null);
}

function importForm(out) {
  const today = shanghaiToday();
  const form = el("form", { id: "timetable-form", class: "inline-form" },
    el("label", { for: "tt-file" }, "课表文件 File (.csv / .xlsx)"),
    el("input", { type: "file", id: "tt-file", name: "file", accept: ".csv,.xlsx", required: "" }),
    el("label", { for: "tt-semester" }, "学期 Semester"),
    el("input", { type: "text", id: "tt-semester", name: "semester_name",
                  placeholder: "2026学年第一学期", maxlength: "64" }),
    el("label", { for: "tt-start" }, "开始 From"),
    el("input", { type: "date", id: "tt-start", name: "semester_start", required: "", value: today }),
    el("label", { for: "tt-end" }, "结束 To"),
    el("input", { type: "date", id: "tt-end", name: "semester_end", required: "" }),
    el("label", { for: "tt-school" }, "学校 School"),
    el("input", { type: "text", id: "tt-school", name: "school", maxlength: "200",
                  placeholder: "默认为文件中的主讲学校 / default: each main school" }),
    el("button", { type: "submit", class: "primary" }, "预览 Preview"));
  form.addEventListener("submit", async event => {
    event.preventDefault();
    // The file as previewed is the file applied, whatever the form holds by then.
    const data = new FormData(form);
    data.set("dry_run", "true");
    out.replaceChildren(message("note", "正在检查… / checking…"));
    try {
      showPreview(out, data, await postImport(data));
    } catch (error) {
      out.replaceChildren(el("pre", { class: "msg error" }, error.message));
    }
  });
  return form;
}

function showPreview(out, data, result) {
  const apply = el("button", { class: "primary", id: "timetable-apply" }, "确认导入 Apply");
  const discard = el("button", {}, "放弃 Discard");
  discard.addEventListener("click", () => out.replaceChildren());
  apply.addEventListener("click", async () => {
    apply.disabled = true;
    data.set("dry_run", "false");
    try {
      const done = await postImport(data);
      out.replaceChildren(message("note", "已导入 / imported：" + counts(done)));
      await renderEdits();
      await refresh();
    } catch (error) {
      apply.disabled = false;
      out.append(el("pre", { class: "msg error" }, error.message));
    }
  });
  out.replaceChildren(
    el("p", { id: "timetable-summary" }, "预览，尚未写入 / preview, nothing written yet：", counts(result)),
    previewTable(result), el("div", { class: "inline-form" }, apply, discard));
}

// ---- changes on the day

function shanghaiIso(day, hhmm) { return day + "T" + hhmm + ":00+08:00"; }

async function lessonEdit(path, body, note) {
  try {
    await api("POST", path, body);
    await renderEdits();  // the list changed here first; the whole page follows
    await refresh();
  } catch (error) {
    note.replaceChildren(message("error", error.message));
  }
}

function editRow(lesson, day, rooms) {
  const note = el("div");
  const time = el("input", { type: "time", value: hm(lesson.starts_at), "aria-label": "新时间 new time" });
  const roomSelect = roomOptions(rooms, "主讲教室 main classroom");
  roomSelect.value = String(lesson.main_classroom.id);
  const cancel = el("button", { class: "danger" }, "取消 Cancel");
  cancel.addEventListener("click", () => lessonEdit("/lessons/" + lesson.id + "/cancel", undefined, note));
  const move = el("button", {}, "调整 Move");
  move.addEventListener("click", () => lessonEdit("/lessons/" + lesson.id + "/move",
    { starts_at: shanghaiIso(day, time.value), main_classroom_id: Number(roomSelect.value) }, note));
  return el("tr", {},
    el("td", {}, hm(lesson.starts_at) + "–" + hm(lesson.ends_at)),
    el("td", {}, lesson.grade + lesson.subject, el("div", { class: "sub" }, room(lesson.main_classroom))),
    el("td", {}, time, roomSelect, move, cancel, note));
}

// Only the answer for the latest asked date is shown: a slower earlier one is dropped.
let editsAsked = 0;

async function renderEdits() {
  const asked = ++editsAsked;
  const holder = document.getElementById("timetable-edits");
  const day = document.getElementById("tt-edit-day").value;
  const [lessons, classrooms, schools] = await Promise.all([
    api("GET", "/lessons?from=" + day + "&to=" + day), api("GET", "/classrooms"), api("GET", "/schools")]);
  const rooms = withSchool(classrooms, schools);
  if (asked !== editsAsked) return;
  holder.setAttribute("data-day", day);
  holder.replaceChildren(lessons.length
    ? table(["时间 Time", "课程 Lesson", "调课 Change"], lessons.map(l => editRow(l, day, rooms)))
    : empty("当天没有课 / no lessons that day"), addForm(day, rooms));
}

function roomOptions(rooms, label, id) {
  return el("select", id ? { id, "aria-label": label } : { "aria-label": label },
    rooms.map(r => el("option", { value: String(r.id) }, room(r))));
}

// One lesson added that day (a make-up or swapped lesson), outside any import.
function addForm(day, rooms) {
  const note = el("div");
  const form = el("form", { id: "tt-add", class: "inline-form" },
    el("input", { type: "text", id: "tt-add-subject", required: "", maxlength: "64",
                  placeholder: "学科 Subject", "aria-label": "学科 Subject" }),
    el("input", { type: "time", id: "tt-add-start", required: "", "aria-label": "上课 Start" }),
    el("input", { type: "time", id: "tt-add-end", required: "", "aria-label": "下课 End" }),
    roomOptions(rooms, "主讲教室 Main classroom", "tt-add-main"),
    roomOptions(rooms, "接收教室 Receiving classroom", "tt-add-receiver"),
    el("button", { type: "submit" }, "加课 Add a lesson"), note);
  form.addEventListener("submit", event => {
    event.preventDefault();
    const value = id => form.querySelector("#" + id).value;
    lessonEdit("/lessons", {
      subject: value("tt-add-subject"), starts_at: shanghaiIso(day, value("tt-add-start")),
      ends_at: shanghaiIso(day, value("tt-add-end")), main_classroom_id: Number(value("tt-add-main")),
      receiver_ids: [Number(value("tt-add-receiver"))],
    }, note);
  });
  return form;
}

function editPanel() {
  const day = el("input", { type: "date", id: "tt-edit-day", value: shanghaiToday() });
  day.addEventListener("change", renderEdits);
  return el("div", {},
    el("h3", {}, "当天调课 ", el("small", {}, "Change a lesson on the day")),
    el("label", { for: "tt-edit-day" }, "日期 Date "), day, el("div", { id: "timetable-edits" }));
}

async function renderTimetable() {
  if (!isWriter()) return;
  const out = el("div", { id: "timetable-preview" });
  timetableBody().replaceChildren(
    el("h3", {}, "导入课表 ", el("small", {}, "Import a school's schedule")), importForm(out), out,
    editPanel());
  await renderEdits();
}
