// The technicians' page: today's lessons with readiness, open alerts (with what became of
// their notifications), failed deliveries, devices, refused agents, and the maintenance
// windows that hold alerts' notifications back; admins and county technicians also enrol
// classrooms' mini-PCs, revoke devices and rotate their credentials.
// Plain DOM building (textContent only), so nothing from the server is parsed as HTML.
"use strict";

const API = "/api/v1";
const REFRESH_MS = 30000;
// The session is an HttpOnly cookie the page never sees (every tab of the browser has
// it, so an e-mail's link needs no new login); each write echoes the session's CSRF
// token, kept with the expiry in localStorage for the other tabs.  The server judges
// the expiry (a 401 logs out): a phone's clock is often wrong, so the stored expiry is
// only shown, never compared with the local clock.
const CSRF_KEY = "syncclass.csrf";
const EXPIRES_KEY = "syncclass.session_expires";
let timer = null;
let me = null;
// Each device's action message survives the periodic re-render, so a refusal's reason
// stays on screen until the technician acts again.
const deviceNotes = new Map();

const SEVERITY = { critical: "严重 critical", warning: "警告 warning", info: "提示 info" };
const STATE = { firing: "告警中 firing", acknowledged: "已确认 acknowledged", resolved: "已恢复 resolved" };
const MODE = { live: "直播 live", recorded: "录播 recorded" };
const DELIVERY = { queued: "排队中 queued", retrying: "重试中 retrying", merged: "并入汇总 in digest",
                   sent: "已送达 sent", failed: "送达失败 failed" };
const NOTICE = { firing: "告警 alert", reminder: "提醒 reminder", escalation: "升级 escalation",
                 resolved: "恢复 recovery" };
const CHANNEL = { email: "邮件 e-mail", dingtalk: "钉钉 DingTalk", wecom: "企业微信 WeCom",
                  webhook: "Webhook" };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function csrf() { return localStorage.getItem(CSRF_KEY); }
function forget() { localStorage.removeItem(CSRF_KEY); localStorage.removeItem(EXPIRES_KEY); }

async function api(method, path, body) {
  const headers = { "X-CSRF-Token": csrf() || "" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(API + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) { leave(); throw new Error("登录已失效 / please log in again"); }
  const data = response.status === 204 ? null : await response.json();
  if (!response.ok) {
    const error = new Error(describe(data, response.status));
    error.status = response.status;
    error.data = data;
    throw error;
  }
  return data;
}

// Pydantic's error types in words a technician reads; the English stays alongside.
const INVALID = {
  missing: "必填", too_short: "至少需要一项", too_long: "内容过长",
  string_too_short: "不能为空", string_too_long: "文字过长", string_type: "应为文字",
  int_parsing: "应为整数", int_type: "应为整数", float_parsing: "应为数字",
  greater_than_equal: "数值过小", greater_than: "数值过小", less_than_equal: "数值过大",
  less_than: "数值过大", time_parsing: "时间格式不对（应为 时:分）",
  date_parsing: "日期格式不对", datetime_parsing: "日期时间格式不对", enum: "不是可选的值",
  literal_error: "不是可选的值", bool_parsing: "应为 是/否", json_invalid: "请求格式不对",
  extra_forbidden: "不认识的字段", value_error: "内容不对", dict_type: "应为键值表",
  list_type: "应为列表",
};

function invalidText(d) {
  const field = (d.loc || []).filter(part => part !== "body").join(".");
  const zh = INVALID[d.type] || "输入有误";
  return (field ? field + "：" : "") + zh + " / " + d.msg;
}

function describe(data, status) {
  if (data && data.message_zh) return data.message_zh + " / " + data.message_en;
  if (data && typeof data.detail === "string") return data.detail;
  if (data && Array.isArray(data.detail)) return data.detail.map(invalidText).join("; ");
  return "请求失败 / request failed (" + status + ")";
}

const timeFmt = new Intl.DateTimeFormat("zh-CN", {
  timeZone: "Asia/Shanghai", hour: "2-digit", minute: "2-digit", hour12: false,
});
const secondsFmt = new Intl.DateTimeFormat("zh-CN", {
  timeZone: "Asia/Shanghai", month: "2-digit", day: "2-digit", hour: "2-digit",
  minute: "2-digit", second: "2-digit", hour12: false,
});
const dateTimeFmt = new Intl.DateTimeFormat("zh-CN", {
  timeZone: "Asia/Shanghai", month: "2-digit", day: "2-digit", hour: "2-digit",
  minute: "2-digit", hour12: false,
});
function hm(iso) { return iso ? timeFmt.format(new Date(iso)) : "—"; }
function when(iso) { return iso ? dateTimeFmt.format(new Date(iso)) : "—"; }

function badge(cls, text) { return el("span", { class: "badge " + cls }, text); }
function empty(text) { return el("p", { class: "empty" }, text); }
function message(kind, text) { return el("div", { class: "msg " + kind }, text); }
function room(r) { return [r.school + " " + r.name]; }
// Classrooms as the API lists them, each with its school's name (what room() shows).
function withSchool(classrooms, schools) {
  const schoolName = new Map(schools.map(s => [s.id, s.name]));
  return classrooms.map(c => ({ ...c, school: schoolName.get(c.school_id) || "" }));
}
// A table that turns into one card per row on a phone: each cell carries its column's
// name, which the narrow layout shows in front of the value.
function table(heads, rows) {
  for (const row of rows) {
    [...row.children].forEach((cell, i) => {
      if (heads[i] && !cell.hasAttribute("colspan")) cell.setAttribute("data-label", heads[i]);
    });
  }
  return el("table", { class: "cards" },
    el("thead", {}, el("tr", {}, heads.map(h => el("th", {}, h)))), el("tbody", {}, rows));
}
// School technicians only read the inventory (the API answers them 403).
function isWriter() { return !!me && (me.role === "admin" || me.role === "county_tech"); }

// ------------------------------------------------------------------ lessons

const TIMING = { in_progress: "进行中 in progress", next: "下一节 next", ended: "已结束 ended" };
const ROLE = { main: "主讲 main", receiver: "听课 receiving" };
// Lessons that need someone: not ready, warnings, or not checkable.
const PROBLEM = new Set(["not_ready", "warn", "unknown"]);

function mine(lesson) {
  if (!me || !me.school_ids.length) return false;
  const rooms = [lesson.main_classroom, ...lesson.receivers];
  return rooms.some(r => me.school_ids.includes(r.school_id));
}

// What to do first: lessons still to come before ended ones, problems first, then the
// technician's own schools, then time.
function lessonOrder(a, b) {
  const key = l => [l.timing === "ended" ? 1 : 0, PROBLEM.has(l.readiness.state) ? 0 : 1,
                    mine(l) ? 0 : 1];
  const [ka, kb] = [key(a), key(b)];
  for (let i = 0; i < ka.length; i++) if (ka[i] !== kb[i]) return ka[i] - kb[i];
  return Date.parse(a.starts_at) - Date.parse(b.starts_at) || a.id - b.id;
}

// Why an end is in its state, in plain words: its findings, or what is awaited.
function endWhy(end) {
  const place = end.school + " " + end.classroom;
  if (end.findings.length) {
    return end.findings.map(f => el("li", { class: "finding " + f.level },
      place + " " + f.message_zh, el("div", { class: "sub" }, f.message_en)));
  }
  const why = {
    not_ready: ["课前检查未通过", "the pre-class check failed"],
    unknown: end.device_id ? ["尚未检查，课程已开始", "never checked before the start"]
                           : ["教室没有启用的设备", "no enabled device in this classroom"],
    checking: ["正在检查，等待设备回复", "check sent, waiting for the device"],
    pending: ["课前检查尚未开始", "the pre-class check has not run yet"],
  }[end.state];
  return why ? [el("li", { class: "finding" }, place + " " + why[0],
                   el("div", { class: "sub" }, why[1]))] : [];
}

// Both ends of the lesson, each with its readiness; a classroom with no check yet still
// shows (as pending) so nobody wonders where the receiving school went.
function lessonEnds(lesson) {
  let ends = lesson.readiness.ends;
  if (!ends.length) {
    const pending = (r, role) => ({ classroom_id: r.id, classroom: r.name, school: r.school,
      role, device_id: null, state: "pending", label_zh: "待检查", label_en: "pending",
      findings: [] });
    ends = [pending(lesson.main_classroom, "main"),
            ...lesson.receivers.map(r => pending(r, "receiver"))];
  }
  return el("ul", { class: "ends" }, ends.map(end => el("li", {
    class: "end", "data-classroom": end.classroom_id, "data-end-state": end.state },
    el("div", { class: "end-head" },
      el("span", { class: "role" }, ROLE[end.role] || end.role),
      el("a", { href: "#classroom-" + end.classroom_id, class: "room" },
        end.school + " " + end.classroom),
      badge(end.state, end.label_zh + " " + end.label_en),
      end.device_id ? el("span", { class: "sub" }, end.device_id) : null),
    el("ul", { class: "why" }, endWhy(end)))));
}

function renderLessons(lessons) {
  const body = document.getElementById("lessons-body");
  if (!lessons.length) { body.replaceChildren(empty("今天没有同步课堂 / no lessons today")); return; }
  const cards = [...lessons].sort(lessonOrder).map(lesson => el("article", {
    class: "lesson " + lesson.timing + (mine(lesson) ? " mine" : ""), "data-lesson": lesson.id },
    el("div", { class: "lesson-head" },
      el("span", { class: "time" }, hm(lesson.starts_at) + "–" + hm(lesson.ends_at)),
      TIMING[lesson.timing] ? el("span", { class: "marker " + lesson.timing },
        TIMING[lesson.timing]) : null,
      el("span", { class: "subject" }, (lesson.grade ? lesson.grade + " " : "") + lesson.subject),
      el("span", { class: "sub" }, lesson.teacher + " · " + (MODE[lesson.mode] || lesson.mode)),
      el("span", { class: "readiness" }, badge(lesson.readiness.state,
        lesson.readiness.label_zh + " " + lesson.readiness.label_en))),
    lessonEnds(lesson)));
  body.replaceChildren(...cards);
}

// ------------------------------------------------------------------ alerts

// Acknowledging and resolving both ask for a comment, so others know who did what.
function commentForm(alert, cell, verb, label, placeholder) {
  const input = el("input", { type: "text", placeholder, "aria-label": "comment" });
  const status = el("div");
  const form = el("form", { class: "inline-form" }, input,
    el("button", { type: "submit", class: "primary" }, label), status);
  form.addEventListener("submit", async event => {
    event.preventDefault();
    if (!input.value.trim()) { status.replaceChildren(message("error", "请填写说明 / comment needed")); return; }
    try {
      await api("POST", "/alerts/" + alert.id + "/" + verb, { comment: input.value.trim() });
      await refresh();
    } catch (error) { status.replaceChildren(message("error", error.message)); }
  });
  cell.replaceChildren(form);
  input.focus();
}

// ------------------------------------------------------------------ deliveries

// One notification's fate: what, where, and what became of it (with the channel's reason).
function deliveryLine(d, prefix) {
  const notes = [];
  if (d.attempts > 1) notes.push("尝试 " + d.attempts + " 次 / " + d.attempts + " attempts");
  if (d.digest_id !== null) notes.push("汇总 digest #" + d.digest_id);
  if (d.fallback_of !== null) notes.push("代替 instead of #" + d.fallback_of);
  if (d.fallbacks.length) notes.push("改发 fell back to " + d.fallbacks.map(i => "#" + i).join(", "));
  return el("li", { "data-delivery": d.id, class: "delivery" }, prefix || null,
    badge(d.state, DELIVERY[d.state] || d.state), " ",
    (NOTICE[d.kind] || d.kind) + " → " + (CHANNEL[d.channel] || d.channel) + " " + d.target,
    el("span", { class: "sub" }, " #" + d.id + " · " + when(d.sent_at || d.created_at)
      + (notes.length ? " · " + notes.join(" · ") : "")),
    d.error && d.state !== "sent" ? el("div", { class: "sub reason" }, "原因 reason: " + d.error) : null);
}

function deliveryList(items) {
  if (!items.length) return empty("尚无通知 / nothing sent yet");
  return el("ul", { class: "deliveries" }, items.map(d => deliveryLine(d)));
}

function renderFailed(items) {
  const body = document.getElementById("failed-body");
  if (!items.length) { body.replaceChildren(empty("没有送达失败的通知 / no failed deliveries")); return; }
  body.replaceChildren(el("ul", { class: "deliveries" }, items.map(d =>
    deliveryLine(d, "告警 alert " + d.alert_ids.map(i => "#" + i).join(", ") + ": "))));
}

// ------------------------------------------------------------------ deep links

// "#alert-N" (the link in an e-mail or a robot's message) opens that alert.
function linkedAlert() {
  const match = /^#alert-(\d+)$/.exec(location.hash);
  return match ? Number(match[1]) : null;
}

// The open alerts, and the linked one when it is no longer open (it may be resolved).
async function alertsWithLinked(alerts) {
  const id = linkedAlert();
  if (id === null || alerts.some(a => a.id === id)) return alerts;
  try { return [await api("GET", "/alerts/" + id), ...alerts]; }
  catch (error) {
    document.getElementById("link-note").replaceChildren(message("error",
      "链接的告警 #" + id + " 无法打开 / the linked alert cannot be opened: " + error.message));
    return alerts;
  }
}

// Scrolls to the linked alert once per link, so the periodic refresh does not jump.
let shownLink = null;
function showLinked() {
  const id = linkedAlert();
  if (id === null || shownLink === location.hash) return;
  const row = document.getElementById("alert-" + id);
  if (!row) return;
  shownLink = location.hash;
  row.scrollIntoView({ block: "center" });
}

window.addEventListener("hashchange", () => { shownLink = null; if (me) refresh(); });

// ------------------------------------------------------------------ devices

async function requestAction(device, name, status) {
  try {
    await api("POST", "/devices/" + encodeURIComponent(device.id) + "/actions/" + name,
              { args: {}, force: false, reason: "" });
    status.replaceChildren(message("note", "已发送 / sent"));
  } catch (error) {
    const refusal = error.data && error.data.code;
    const box = el("div", {}, message("error", "被拒绝 refused: " + error.message));
    if (refusal === "in_lesson" || refusal === "lead_window") box.append(forceForm(device, name, status));
    status.replaceChildren(box);
  }
}

// Forcing needs a reason (it goes to the audit): the form stays until it is sent, and
// says what is wrong under itself.
function forceForm(device, name, status) {
  const reasonInput = el("input", { type: "text", placeholder: "强制原因 reason to force",
                                    "aria-label": "force reason" });
  const note = el("div");
  const form = el("form", { class: "inline-form" }, reasonInput,
    el("button", { type: "submit", class: "danger" }, "强制重启 Force"), note);
  form.addEventListener("submit", async event => {
    event.preventDefault();
    const reason = reasonInput.value.trim();
    if (!reason) { note.replaceChildren(message("error", "请填写强制原因 / reason needed")); return; }
    try {
      await api("POST", "/devices/" + encodeURIComponent(device.id) + "/actions/" + name,
                { args: {}, force: true, reason });
      status.replaceChildren(message("note", "已发送 / sent"));
    } catch (error) { note.replaceChildren(message("error", "被拒绝 refused: " + error.message)); }
  });
  return form;
}

// A revoked device's last message may have said "online": enabled decides first.
// No state at all: the fleet has never heard from it (its alert says what to check).
function deviceBadge(device) {
  const health = device.health;
  return !device.enabled ? badge("disabled", "已停用 disabled")
    : !health ? badge("unknown", "从未连接 never connected")
    : health.online ? badge("online", "在线 online") : badge("offline", "离线 offline");
}

function renderDevices(devices) {
  const body = document.getElementById("devices-body");
  if (!devices.length) { body.replaceChildren(empty("没有设备 / no devices")); return; }
  const rows = devices.map(device => {
    const health = device.health;
    const state = deviceBadge(device);
    let problems = [el("span", { class: "sub" }, "—")];
    if (health && health.problems.length) {
      problems = health.problems.map(p => el("div", {}, p.message || p.reason || p.section));
    } else if (health && health.online && health.telemetry_at) {
      problems = [el("span", { class: "sub" }, "正常 OK")];
    }
    if (!deviceNotes.has(device.id)) deviceNotes.set(device.id, el("div"));
    const status = deviceNotes.get(device.id);
    const reboot = el("button", { class: "danger", onclick: () => {
      if (confirm("确定重启 " + device.id + "？ / Reboot " + device.id + "?")) {
        requestAction(device, "reboot", status);
      }
    } }, "重启 Reboot");
    const credentials = isWriter() ? [
      el("button", { onclick: () => rotate(device, status) }, "更换凭据 Rotate credentials"),
      device.enabled ? el("button", { class: "danger", onclick: () => revokeForm(device, status) },
        "吊销 Revoke") : null,
    ] : [];
    return el("tr", { "data-device": device.id },
      el("td", {}, el("a", { href: "#device-" + device.id }, device.id),
        el("div", { class: "sub" }, device.school + " " + device.classroom)),
      el("td", {}, state),
      el("td", {}, health ? when(health.last_seen) : "—"),
      el("td", {}, problems),
      el("td", {}, reboot, credentials, status));
  });
  body.replaceChildren(table(["设备 Device", "状态 Status", "最近上报 Last seen", "健康 Health",
    "操作 Actions"], rows));
}

function renderStrangers(strangers) {
  // Agents the broker lets in but the inventory refuses: never only in a server log.
  const body = document.getElementById("strangers-body");
  document.getElementById("strangers").classList.toggle("hidden", !strangers.length);
  body.replaceChildren(table(["设备 Device", "原因 Why refused", "最近 Last seen",
    "消息数 Messages", "主题 Topic"], strangers.map(s => el("tr", { "data-stranger": s.device_id },
      el("td", {}, s.device_id),
      el("td", {}, s.disabled ? "已停用 disabled in the inventory" : "未登记 not in the inventory"),
      el("td", {}, when(s.last_seen)),
      el("td", {}, String(s.messages)),
      el("td", {}, s.topic)))));
}

// ------------------------------------------------------------------ enrolment

// A code is shown once (only its hash is stored), so it stays on screen until replaced.
function codeBox(out, title) {
  return el("div", { class: "code-box" },
    el("div", {}, title),
    el("div", { class: "enrol-code" }, out.code),
    el("div", { class: "sub" }, "有效期至 expires " + when(out.expires_at) +
      "（仅可使用一次 / works once）"),
    el("div", {}, "在教室主机上以 root（sudo）运行 / run as root (sudo) on the mini-PC:"),
    el("pre", { class: "command" }, out.command),
    el("div", { class: "sub" }, "然后 then: systemctl restart syncclass-agent"));
}

async function rotate(device, status) {
  if (!confirm("为 " + device.id + " 生成重新注册码？旧凭据在注册后失效。 / " +
               "Make a re-enrol code for " + device.id + "? The old credentials stop " +
               "working once it is used.")) return;
  try {
    const out = await api("POST", "/devices/" + encodeURIComponent(device.id) + "/rotate");
    status.replaceChildren(codeBox(out, "重新注册码 Re-enrol code for " + device.id +
      "（旧凭据在使用后失效 / the old credentials stop working once it is used）"));
  } catch (error) { status.replaceChildren(message("error", error.message)); }
}

// Revoking asks for a reason (it goes to the audit) and a confirmation.
function revokeForm(device, status) {
  const reason = el("input", { type: "text", placeholder: "吊销原因 reason (e.g. 主机被盗 stolen)",
                               "aria-label": "revoke reason" });
  const note = el("div");
  const form = el("form", { class: "inline-form" }, reason,
    el("button", { type: "submit", class: "danger" }, "确认吊销 Confirm revoke"), note);
  form.addEventListener("submit", async event => {
    event.preventDefault();
    if (!reason.value.trim()) { note.replaceChildren(message("error", "请填写原因 / reason needed")); return; }
    if (!confirm("吊销 " + device.id + "？设备将立即断开并被拒绝连接。 / Revoke " + device.id +
                 "? It is disconnected at once and refused from then on.")) return;
    try {
      await api("POST", "/devices/" + encodeURIComponent(device.id) + "/revoke",
                { reason: reason.value.trim() });
      status.replaceChildren(message("note", "已吊销 / revoked"));
      await refresh();
    } catch (error) { note.replaceChildren(message("error", error.message)); }
  });
  status.replaceChildren(form);
  reason.focus();
}

async function renderEnrol() {
  const section = document.getElementById("enrol");
  if (!isWriter()) { section.classList.add("hidden"); return; }
  const [schools, classrooms] = await Promise.all([api("GET", "/schools"), api("GET", "/classrooms")]);
  document.getElementById("enrol-classroom").replaceChildren(...withSchool(classrooms, schools)
    .map(c => el("option", { value: String(c.id) }, room(c))));
  document.getElementById("enrol-result").replaceChildren();
  section.classList.remove("hidden");
}

document.getElementById("enrol-form").addEventListener("submit", async event => {
  event.preventDefault();
  const select = document.getElementById("enrol-classroom");
  const result = document.getElementById("enrol-result");
  const name = select.options[select.selectedIndex].textContent;
  try {
    const out = await api("POST", "/classrooms/" + select.value + "/enrol-codes", {});
    result.replaceChildren(codeBox(out, "注册码 Enrolment code for " + name));
  } catch (error) { result.replaceChildren(message("error", error.message)); }
});

// ------------------------------------------------------------------ maintenance windows

const WEEKDAYS = ["周一 Mon", "周二 Tue", "周三 Wed", "周四 Thu", "周五 Fri", "周六 Sat", "周日 Sun"];

function matcherText(matchers) {
  const pairs = Object.entries(matchers);
  return pairs.length ? pairs.map(([k, v]) => k + "=" + v).join(", ") : "全部告警 all alerts";
}

function renderWindows(windows) {
  const body = document.getElementById("maintenance-body");
  if (!windows.length) { body.replaceChildren(empty("没有维护时段 / no maintenance windows")); return; }
  // School technicians read; admins and county technicians tidy up their own (a
  // fleet-wide window is the admin's).
  const mayDelete = w => me && (me.role === "admin" ||
    (me.role === "county_tech" && Object.keys(w.matchers).length > 0));
  const rows = windows.map(w => {
    const status = el("div");
    const remove = mayDelete(w) ? el("button", { class: "danger", onclick: async () => {
      if (!confirm("删除维护时段 " + w.name + "？ / Delete this window?")) return;
      try {
        await api("DELETE", "/maintenance-windows/" + w.id);
        await refresh();
      } catch (error) { status.replaceChildren(message("error", error.message)); }
    } }, "删除 Delete") : null;
    const span = w.start_time === w.end_time ? "全天 all day"
      : w.start_time + "–" + w.end_time + (w.end_time < w.start_time ? " (次日 next day)" : "");
    return el("tr", { "data-window": w.id },
      el("td", {}, w.name),
      el("td", {}, w.weekdays.map(d => WEEKDAYS[d]).join(" ")),
      el("td", {}, span, el("div", { class: "sub" }, w.timezone)),
      el("td", {}, matcherText(w.matchers)),
      el("td", {}, remove, status));
  });
  body.replaceChildren(table(["名称 Name", "星期 Days", "时间 Time", "范围 Applies to", ""], rows));
}

// Admins add fleet-wide windows; a county technician's window covers their county.
function renderWindowForm() {
  const holder = document.getElementById("maintenance-form");
  if (!me || !(me.role === "admin" || me.role === "county_tech")) {
    holder.replaceChildren();
    return;
  }
  const days = WEEKDAYS.map((label, i) => el("label", { class: "day" },
    el("input", { type: "checkbox", name: "weekday", value: String(i) }), label));
  const status = el("div");
  const form = el("form", { id: "window-form", onsubmit: async event => {
    event.preventDefault();
    const data = new FormData(form);
    const body = {
      name: data.get("name"),
      weekdays: data.getAll("weekday").map(Number),
      start_time: data.get("start_time"),
      end_time: data.get("end_time"),
      matchers: me.role === "county_tech" ? { county_id: String(me.county_id) } : {},
    };
    try {
      await api("POST", "/maintenance-windows", body);
      form.reset();
      status.replaceChildren(message("note", "已添加 / added"));
      await refresh();
    } catch (error) { status.replaceChildren(message("error", error.message)); }
  } },
    el("input", { type: "text", name: "name", placeholder: "名称 name（如 夜间 nights）",
                  required: "" }),
    el("span", { class: "days" }, days),
    el("input", { type: "time", name: "start_time", required: "", "aria-label": "开始 start" }),
    el("input", { type: "time", name: "end_time", required: "", "aria-label": "结束 end" }),
    el("button", { type: "submit", class: "primary" }, "添加维护时段 Add window"),
    status);
  holder.replaceChildren(form);
}

// ------------------------------------------------------------------ page

// Refreshes overlap (a live event, a filter changed, the timer): only the newest draws,
// or an older answer arriving last would show what the filters no longer ask for.
let refreshes = 0;

async function refresh() {
  const turn = ++refreshes;
  const newest = () => turn === refreshes;
  if (wallShow()) {  // wall.js: the county centre's screen
    try { await refreshWall(newest); }
    catch (error) { document.getElementById("wall-updated").replaceChildren(message("error", error.message)); }
    return;
  }
  try {
    const [lessons, alerts, devices, windows, strangers, failed] = await Promise.all([
      api("GET", "/lessons"), api("GET", alertQuery()), api("GET", "/devices"),
      api("GET", "/maintenance-windows"), api("GET", "/devices/unknown"),
      api("GET", "/notifications?status=failed&limit=50"),
    ]);
    const shown = await alertsWithLinked(alerts);
    if (!newest()) return;
    renderLessons(lessons);
    renderAlerts(shown);
    renderFailed(failed);
    renderDevices(devices);
    renderStrangers(strangers);
    renderWindows(windows);
    document.getElementById("updated").textContent =
      "更新于 updated " + secondsFmt.format(new Date());
    showLinked();
    document.dispatchEvent(new Event("syncclass:refreshed"));  // the other pages follow
  } catch (error) {
    document.getElementById("updated").replaceChildren(message("error", error.message));
  }
}

function showLogin() {
  document.getElementById("app").classList.add("hidden");
  document.getElementById("wall").classList.add("hidden");
  document.body.classList.remove("wall-mode");
  document.getElementById("who").classList.add("hidden");
  document.getElementById("login").classList.remove("hidden");
}

async function showApp() {
  me = await api("GET", "/me");
  const who = document.getElementById("who");
  const expires = localStorage.getItem(EXPIRES_KEY);
  who.replaceChildren(me.name + " (" + me.username + ")",
    expires ? el("span", { class: "sub" }, " 登录有效至 valid until " + when(expires)) : null,
    el("button", { onclick: logout }, "退出 Log out"));
  who.classList.remove("hidden");
  document.getElementById("login").classList.add("hidden");
  document.getElementById("app").classList.remove("hidden");
  renderWindowForm();
  if (typeof renderTimetable === "function") await renderTimetable();  // timetable.js
  await Promise.all([renderEnrol(), setupAlertFilters()]);  // alerts.js
  liveNotifyButton();  // live.js
  liveStart();
  await refresh();
  document.dispatchEvent(new Event("syncclass:login"));  // the other pages' router
  clearInterval(timer);
  timer = setInterval(refresh, REFRESH_MS);
}

// Logging out ends the session on the server too; the other tabs follow (storage event).
async function logout() {
  try { await api("DELETE", "/auth/session"); } catch (error) { /* already gone */ }
  leave();
}

function leave() {
  forget();
  me = null;
  deviceNotes.clear();
  liveStop();
  document.getElementById("enrol-result").replaceChildren();  // a code is a secret
  clearInterval(timer);
  document.dispatchEvent(new Event("syncclass:logout"));
  showLogin();
}

document.getElementById("login-form").addEventListener("submit", async event => {
  event.preventDefault();
  const error = document.getElementById("login-error");
  error.classList.add("hidden");
  const response = await fetch(API + "/auth/session", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      username: document.getElementById("username").value,
      password: document.getElementById("password").value,
    }),
  });
  if (!response.ok) {
    // A lockout (429) says how long to wait; anything else reads as a wrong password.
    error.textContent = response.status === 429
      ? (await response.json()).detail
      : "用户名或密码错误 / wrong username or password";
    error.classList.remove("hidden");
    return;
  }
  const session = await response.json();
  localStorage.setItem(CSRF_KEY, session.csrf_token);
  localStorage.setItem(EXPIRES_KEY, session.expires_at);
  await showApp();
});

// Logging out in one tab logs out the others.
window.addEventListener("storage", event => {
  if (event.key === CSRF_KEY && !event.newValue && me) leave();
});

if (csrf()) showApp().catch(showLogin); else showLogin();
