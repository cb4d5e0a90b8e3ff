// The county centre's wall screen ("#wall" or "?wall=1"): every classroom in scope as a
// tile coloured by its state, worst first, and the next lessons; kept current by the
// same live stream as the page.  Read from across a room: large type, few words.
"use strict";

const WALL_STATE = {
  bad: "故障 fault", warn: "注意 warning", ok: "正常 OK", none: "无设备 no device",
};
const WALL_ORDER = { bad: 0, warn: 1, none: 2, ok: 3 };

function wallMode() {
  return location.hash === "#wall" || new URLSearchParams(location.search).get("wall") === "1";
}

// A lesson's end in this classroom, for the lesson that is on now or next.
function wallEnd(lesson, classroomId) {
  return lesson.readiness.ends.find(e => e.classroom_id === classroomId) || null;
}

function wallRoom(room, devices, lessons) {
  const enabled = devices.filter(d => d.enabled);
  const why = [];
  let state = enabled.length ? "ok" : "none";
  const worse = s => { if (WALL_ORDER[s] < WALL_ORDER[state]) state = s; };
  for (const device of enabled) {
    const health = device.health;
    if (!health || !health.online) {
      worse("bad");
      why.push(health ? "设备离线 device offline" : "从未连接 never connected");
    }
    if (health && health.status === "critical") worse("bad");
    if (health && health.status === "warning") worse("warn");
    for (const p of health ? health.problems : []) why.push(p.message || p.reason);
  }
  const mine = lessons.filter(l => l.timing !== "ended" && l.timing !== "cancelled" &&
    (l.main_classroom.id === room.id || l.receivers.some(r => r.id === room.id)));
  const next = mine[0] || null;
  const end = next ? wallEnd(next, room.id) : null;
  if (end && end.state === "not_ready") worse("bad");
  if (end && (end.state === "warn" || end.state === "at_risk")) worse("warn");
  if (end) for (const f of end.findings) why.push(f.message_zh);
  return { room, state, why: [...new Set(why)], next, end };
}

function wallTile(t) {
  const next = t.next;
  return el("article", { class: "tile " + t.state, "data-classroom": t.room.id,
                         "data-state": t.state },
    el("h3", {}, t.room.school, el("span", { class: "room" }, t.room.name)),
    el("div", { class: "tile-state" }, WALL_STATE[t.state]),
    t.why.length ? el("ul", { class: "tile-why" }, t.why.slice(0, 3).map(w => el("li", {}, w)))
      : null,
    next ? el("div", { class: "tile-next" },
      (next.timing === "in_progress" ? "上课中 now " : "下一节 next ") + hm(next.starts_at) + " " +
      next.subject + (t.end ? " · " + t.end.label_zh : "")) : null);
}

function wallLesson(lesson) {
  return el("li", { class: "wall-lesson", "data-lesson": lesson.id },
    el("span", { class: "time" }, hm(lesson.starts_at)),
    TIMING[lesson.timing] ? el("span", { class: "marker " + lesson.timing },
      TIMING[lesson.timing]) : null,
    el("span", { class: "subject" }, lesson.subject),
    el("span", {}, lesson.main_classroom.school + " → " +
      lesson.receivers.map(r => r.school).join("、")),
    badge(lesson.readiness.state, lesson.readiness.label_zh + " " + lesson.readiness.label_en));
}

async function refreshWall(newest) {
  const [schools, classrooms, devices, lessons] = await Promise.all([
    api("GET", "/schools"), api("GET", "/classrooms"), api("GET", "/devices"),
    api("GET", "/lessons")]);
  if (!newest()) return;
  const upcoming = lessons.filter(l => l.timing !== "ended" && l.timing !== "cancelled")
    .sort((a, b) => Date.parse(a.starts_at) - Date.parse(b.starts_at));
  const tiles = withSchool(classrooms, schools).map(c => wallRoom(
    c, devices.filter(d => d.classroom_id === c.id), upcoming));
  tiles.sort((a, b) => WALL_ORDER[a.state] - WALL_ORDER[b.state] ||
    a.room.school.localeCompare(b.room.school, "zh-CN"));
  const counts = Object.keys(WALL_STATE).map(s => [s, tiles.filter(t => t.state === s).length])
    .filter(([, n]) => n);
  document.getElementById("wall-summary").replaceChildren(...counts.map(([s, n]) =>
    el("span", { class: "count " + s }, WALL_STATE[s] + " " + n)));
  document.getElementById("wall-grid").replaceChildren(...tiles.map(wallTile));
  document.getElementById("wall-lessons").replaceChildren(upcoming.length
    ? el("ol", {}, upcoming.slice(0, 8).map(wallLesson))
    : empty("今天没有更多课程 / no more lessons today"));
  document.getElementById("wall-updated").textContent =
    "更新于 updated " + secondsFmt.format(new Date());
}

// Shows the wall or the page, as the address asks.
function wallShow() {
  const on = wallMode();
  document.body.classList.toggle("wall-mode", on);
  document.getElementById("wall").classList.toggle("hidden", !on);
  document.getElementById("app").classList.toggle("hidden", on);
  return on;
}

// A wall browser not started in kiosk mode: one click hides its frame.
document.getElementById("wall-full").addEventListener("click", () => {
  if (document.fullscreenElement) document.exitFullscreen();
  else document.documentElement.requestFullscreen().catch(() => {});
});
