// The alert list: filters (county, school, severity, state, words) applied by the server
// within the person's scope; each alert with what became of its notifications, and
// acknowledge, resolve and silence in place.  A "#alert-N" link still opens its alert
// whatever the filters (app.js: alertsWithLinked).
"use strict";

const alertFilter = { county_id: "", school_id: "", severity: "", state: "", q: "" };
// What a silence set from this page said, shown under the alert's buttons until it closes.
const silenced = new Map();
const SILENCE_FOR = [[30, "30 分钟 min"], [60, "1 小时 hour"], [120, "2 小时 hours"],
                     [240, "4 小时 hours"], [1440, "1 天 day"], [10080, "7 天 days"]];

// The query string of the alert list (app.js's refresh reads the list through it).
function alertQuery() {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(alertFilter)) {
    if (!value) continue;
    if (key === "state" && value === "all") {
      for (const s of ["firing", "acknowledged", "resolved"]) params.append("state", s);
    } else params.append(key, value);
  }
  params.append("limit", "100");
  return "/alerts?" + params.toString();
}

function filterSelect(key, label, options) {
  const select = el("select", { id: "filter-" + key, "aria-label": label },
    options.map(([value, text]) => el("option", { value }, text)));
  select.value = alertFilter[key];
  select.addEventListener("change", () => { alertFilter[key] = select.value; refresh(); });
  return el("label", { class: "filter" }, el("span", {}, label), select);
}

// Built once per login: the counties and schools in scope.
async function setupAlertFilters() {
  const [counties, schools] = await Promise.all([api("GET", "/counties"), api("GET", "/schools")]);
  const search = el("input", { type: "search", id: "filter-q", value: alertFilter.q,
    placeholder: "搜索 学校/教室/设备/内容 search", "aria-label": "搜索告警 search alerts" });
  let typing = null;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { alertFilter.q = search.value.trim(); refresh(); }, 300);
  });
  const any = ["", "全部 all"];
  document.getElementById("alert-filters").replaceChildren(...[
    counties.length > 1 ? filterSelect("county_id", "县区 County",
      [any, ...counties.map(c => [String(c.id), c.name])]) : null,
    schools.length > 1 ? filterSelect("school_id", "学校 School",
      [any, ...schools.map(s => [String(s.id), s.name])]) : null,
    filterSelect("severity", "级别 Severity", [any, ...Object.entries(SEVERITY)]),
    filterSelect("state", "状态 State", [["", "未处理 open"], ["firing", STATE.firing],
      ["acknowledged", STATE.acknowledged], ["resolved", STATE.resolved], ["all", "全部 all"]]),
    el("label", { class: "filter search" }, el("span", {}, "搜索 Search"), search),
  ].filter(Boolean));
}

// A silence of this fault at this place, for a chosen time, with a reason.
function silenceForm(alert, cell) {
  const minutes = el("select", { "aria-label": "静默时长 silence for" },
    SILENCE_FOR.map(([m, text]) => el("option", { value: String(m) }, text)));
  minutes.value = "120";
  const comment = el("input", { type: "text", "aria-label": "静默原因 reason",
                                placeholder: "静默原因 reason（如 已报修 repair booked）" });
  const status = el("div");
  const form = el("form", { class: "inline-form silence-form" }, minutes, comment,
    el("button", { type: "submit", class: "primary" }, "确认静默 Silence"), status);
  form.addEventListener("submit", async event => {
    event.preventDefault();
    if (!comment.value.trim()) { status.replaceChildren(message("error", "请填写原因 / reason needed")); return; }
    try {
      const out = await api("POST", "/alerts/" + alert.id + "/silence",
                            { minutes: Number(minutes.value), comment: comment.value.trim() });
      silenced.set(alert.id, "已静默至 silenced until " + when(out.ends_at) +
        " / 通知将暂停 notifications held back");
      cell.replaceChildren();  // drawn again with its buttons and the note
      await refresh();
    } catch (error) { status.replaceChildren(message("error", error.message)); }
  });
  cell.replaceChildren(form);
  comment.focus();
}

function alertActions(alert) {
  // A form someone is filling in (ack, resolve, silence) survives a live re-render.
  const kept = document.querySelector("#alert-" + alert.id + "[data-state='" + alert.state +
                                      "'] td.action");
  if (kept && kept.querySelector("form")) return kept;
  const action = el("td", { class: "action" });
  const resolve = el("button", { onclick: () => commentForm(alert, action, "resolve",
    "标记已解决 Mark resolved", "解决说明 how it was fixed") }, "已解决 Resolve");
  const silence = el("button", { onclick: () => silenceForm(alert, action) }, "静默 Silence");
  if (alert.state === "firing") {
    action.append(el("button", { onclick: () => commentForm(alert, action, "ack",
      "确认 Acknowledge", "处理说明 comment (who is on it)") }, "确认 Ack"), resolve, silence);
  } else if (alert.state === "acknowledged") {
    action.append(el("div", {}, "由 " + alert.acknowledged_by + " 确认 / acked"),
                  el("div", { class: "sub" }, alert.ack_comment || ""), resolve, silence);
  } else {
    silenced.delete(alert.id);
    action.append(el("div", { class: "sub" }, alert.awaiting_device
      ? "已手动关闭，等待设备确认 / closed by hand, waiting for the device" : "已恢复 / resolved"));
  }
  if (silenced.has(alert.id)) action.append(message("note", silenced.get(alert.id)));
  return action;
}

// Every notification's fate, shown without a click (a technician asks "was I told?").
async function fillDeliveries(alertId, cell) {
  try {
    const items = await api("GET", "/alerts/" + alertId + "/deliveries");
    cell.replaceChildren(deliveryList(items));
  } catch (error) { cell.replaceChildren(message("error", error.message)); }
}

function renderAlerts(alerts) {
  const body = document.getElementById("alerts-body");
  const filtered = Object.values(alertFilter).some(Boolean);
  if (!alerts.length) {
    body.replaceChildren(empty(filtered ? "没有符合条件的告警 / no alert matches the filters"
                                        : "没有未处理的告警 / no open alerts"));
    return;
  }
  const rows = alerts.map(alert => {
    const notices = el("td", { class: "notices" }, el("span", { class: "sub" }, "…"));
    fillDeliveries(alert.id, notices);
    return el("tr", { "data-alert": alert.id, id: "alert-" + alert.id,
                      "data-state": alert.state,
                      class: alert.id === linkedAlert() ? "linked" : "" },
      el("td", {}, badge(alert.severity, SEVERITY[alert.severity] || alert.severity)),
      el("td", {}, alert.summary_zh, el("div", { class: "sub" }, alert.summary_en)),
      el("td", {}, alert.device_id || "—"),
      el("td", {}, when(alert.started_at)),
      el("td", {}, badge(alert.state, STATE[alert.state] || alert.state),
        alert.escalation_level > 0 ? el("div", { class: "sub" }, "已升级至县电教 escalated") : null,
        alert.suppressed_by ? el("div", { class: "sub muted" }, "静默 muted: " + alert.suppressed_by) : null),
      notices,
      alertActions(alert));
  });
  body.replaceChildren(table(["级别 Severity", "告警 Alert", "设备 Device", "开始 Since",
    "状态 State", "通知 Notices", "处理 Handle"], rows));
}
