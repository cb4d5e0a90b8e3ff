// Pieces the classroom and device pages share: peripherals against the baseline, the
// latest checks (and a re-run whose result is shown when it arrives), alerts with their
// timeline, recent actions with the agent's answers, and the charts.
"use strict";

const Parts = (() => {
  const ROLES = { cameras: "摄像头 camera", microphones: "麦克风 microphone", speakers: "扬声器 speaker" };
  const VERDICT = { pass: ["ready", "通过 pass"], warn: ["warn", "警告 warn"],
                    fail: ["not_ready", "未通过 fail"], no_answer: ["offline", "无应答 no answer"] };
  const PHASE = { first: "课前 pre-class", recheck: "复查 recheck", manual: "手动 manual" };
  const OUTCOME = { accepted: "已发送，等待回复 sent, waiting", ok: "成功 done",
                    failed: "失败 failed", refused: "被拒绝 refused", timeout: "无回复 no answer" };
  const EVENT = { pending: "发现问题 fault seen", fired: "告警 fired", reopened: "重新告警 reopened",
                  confirmed: "复查确认 confirmed", still_failing: "仍有问题 still failing",
                  acknowledged: "已确认 acknowledged", escalated: "已升级 escalated",
                  muted: "已静默 muted", unmuted: "取消静默 unmuted",
                  clearing: "问题消失 fault gone", returning: "问题重现 fault back",
                  cleared: "已清除 cleared", resolved: "已恢复 resolved" };
  const FIGURES = [
    ["rtt_ms", "往返时延 RTT", "ms"], ["loss_pct", "丢包 loss", "%"],
    ["jitter_ms", "抖动 jitter", "ms"],
    ["rx_mbps", "下行流量 traffic in", "Mbit/s"], ["tx_mbps", "上行流量 traffic out", "Mbit/s"],
    ["down_mbps", "下行带宽测试 bandwidth down", "Mbit/s"],
    ["up_mbps", "上行带宽测试 bandwidth up", "Mbit/s"],
    ["temp_c", "主机温度 temperature", "°C"],
  ];
  const SPAN = { day: ["近一天 last day", 86400e3], week: ["近一周 last week", 7 * 86400e3] };

  function section(id, zh, en, ...children) {
    return el("section", { id }, el("h2", {}, zh, el("small", {}, en)), ...children);
  }

  function peripheralState(p) {
    if (p.expected && !p.present) return badge("not_ready", "缺失 missing");
    if (p.ok === false) return badge("not_ready", "故障 fault");
    if (!p.expected && p.checked) return badge("info", "基线外 not in baseline");
    return badge("ready", "正常 OK");
  }

  async function peripherals(deviceId) {
    const out = await api("GET", "/devices/" + encodeURIComponent(deviceId) + "/peripherals");
    const baseline = { inventory: "基线：资产登记 baseline: fleet inventory",
                       agent: "基线：设备自身 baseline: the agent's own",
                       "": "无基线 no baseline known" }[out.baseline];
    // One line each (not a table): a phone shows them all in one glance.
    const body = out.items.length ? el("ul", { class: "why peripheral-list" }, out.items.map(p =>
      el("li", { "data-peripheral": p.id }, peripheralState(p), " ", ROLES[p.role] || p.role, " ",
        el("strong", {}, p.name || p.id), p.name ? el("span", { class: "sub" }, " " + p.id) : null,
        p.message ? el("div", { class: "sub" }, p.message) : null)))
      : empty("没有外设报告 / no peripherals reported");
    return el("div", { class: "peripherals" }, el("p", { class: "sub" }, baseline), body);
  }

  function findingList(findings) {
    return el("ul", { class: "why" }, findings.map(f => el("li", { class: "finding " + f.level },
      f.message_zh || f.reason, el("div", { class: "sub" }, f.message_en || ""))));
  }

  function checkCard(c) {
    const [cls, text] = VERDICT[c.verdict] || ["checking", "等待中 waiting"];
    return el("div", { class: "check", "data-check": c.id },
      el("div", { class: "end-head" }, badge(cls, text),
        el("span", {}, when(c.requested_at)),
        el("span", { class: "sub" }, PHASE[c.phase] || c.phase)),
      c.findings.length ? findingList(c.findings)
        : el("p", { class: "sub" }, c.verdict ? "无问题 no findings" : "尚无结果 no result yet"));
  }

  // The latest checks; "re-run" asks the agent and waits (bounded) for its answer.
  async function checks(deviceId) {
    const holder = el("div");
    const status = el("div", { class: "rerun-status", "aria-live": "polite" });
    async function draw() {
      const list = await api("GET", "/devices/" + encodeURIComponent(deviceId) + "/checks?limit=3");
      holder.replaceChildren(...(list.length ? list.map(checkCard)
        : [empty("尚未检查 / never checked")]));
      return list;
    }
    const before = await draw();
    const rerun = el("button", { class: "primary", onclick: async () => {
      rerun.disabled = true;
      status.replaceChildren(message("note", "已发送，等待设备回复… / sent, waiting for the device…"));
      try {
        const entry = await api("POST", "/devices/" + encodeURIComponent(deviceId) +
                                "/actions/run-check", { args: {}, force: false, reason: "" });
        const known = new Set(before.map(c => c.id));
        for (let i = 0; i < 60; i++) {
          await new Promise(resolve => setTimeout(resolve, 2000));
          const audit = await api("GET", "/audit/" + entry.id);
          const list = await draw();
          const fresh = list.find(c => !known.has(c.id) && c.verdict);
          if (fresh) {
            status.replaceChildren(message("note", "检查结果已到 / result arrived: " +
              (VERDICT[fresh.verdict] || [0, fresh.verdict])[1]));
            return;
          }
          if (["failed", "refused", "timeout"].includes(audit.outcome)) {
            status.replaceChildren(message("error", (OUTCOME[audit.outcome] || audit.outcome) +
              (audit.detail ? "：" + audit.detail : "")));
            return;
          }
        }
        status.replaceChildren(message("error", "两分钟内没有回复 / no answer within two minutes"));
      } catch (error) {
        status.replaceChildren(message("error", "被拒绝 refused: " + error.message));
      } finally { rerun.disabled = false; }
    } }, "重新检查 Re-run check");
    return el("div", {}, el("div", { class: "inline-form" }, rerun), status, holder);
  }

  // Every change of the alert and every notification about it, in time order.
  function timeline(detail) {
    const items = [
      ...detail.events.map(e => ({ at: e.at, node: el("li", { class: "event" },
        el("span", { class: "sub" }, when(e.at) + " "), EVENT[e.kind] || e.kind,
        e.actor && e.actor !== "system" ? " · " + e.actor : "", e.text ? "：" + e.text : "") })),
      ...detail.deliveries.map(d => ({ at: d.sent_at || d.created_at, node: deliveryLine(d) })),
    ].sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
    return el("ul", { class: "timeline deliveries" }, items.map(i => i.node));
  }

  // Alerts whose timeline is unfolded: they stay so when the list is redrawn.
  const openTimelines = new Set();

  async function alerts(query) {
    const list = await api("GET", "/alerts?" + query +
                           "&state=firing&state=acknowledged&state=resolved&limit=20");
    if (!list.length) return empty("近期没有告警 / no recent alerts");
    return el("ul", { class: "alert-list" }, list.map(a => {
      const holder = el("div");
      async function unfold() {
        const open = openTimelines.has(a.id);
        toggle.setAttribute("aria-expanded", String(open));
        if (!open) { holder.replaceChildren(); return; }
        try { holder.replaceChildren(timeline(await api("GET", "/alerts/" + a.id))); }
        catch (error) { holder.replaceChildren(message("error", error.message)); }
      }
      const toggle = el("button", { "aria-expanded": "false", onclick: () => {
        if (openTimelines.has(a.id)) openTimelines.delete(a.id); else openTimelines.add(a.id);
        unfold();
      } }, "时间线 Timeline");
      unfold();
      return el("li", { class: "alert-item", "data-alert": a.id },
        el("div", { class: "end-head" },
          badge(a.severity, SEVERITY[a.severity] || a.severity),
          badge(a.state, STATE[a.state] || a.state),
          el("a", { href: "#alert-" + a.id }, "#" + a.id),
          el("span", { class: "sub" }, when(a.started_at) +
            (a.resolved_at ? " – " + when(a.resolved_at) : ""))),
        el("div", {}, a.summary_zh), el("div", { class: "sub" }, a.summary_en),
        toggle, holder);
    }));
  }

  async function audit(query, limit) {
    const list = await api("GET", "/audit?limit=" + (limit || 10) + (query ? "&" + query : ""));
    if (!list.length) return empty("没有操作记录 / no actions yet");
    return table(["时间 When", "操作 Action", "结果 Outcome", "回复 Answers"], list.map(e =>
      el("tr", { "data-audit": e.id },
        el("td", {}, when(e.at), el("div", { class: "sub" }, e.actor)),
        el("td", {}, e.action, e.device_id ? el("div", { class: "sub" }, e.device_id) : null,
          e.forced ? el("div", { class: "sub reason" }, "强制 forced: " + e.reason) : null),
        el("td", {}, OUTCOME[e.outcome] || e.outcome,
          e.detail ? el("div", { class: "sub" }, e.detail) : null),
        el("td", {}, e.answers.length ? el("ul", { class: "why" }, e.answers.map(r =>
          el("li", { class: r.ok ? "" : "fail" }, when(r.received_at) + " " +
            (r.ok ? "成功 ok" : "失败 failed") + (r.message ? "：" + r.message : "") +
            (r.reason ? " (" + r.reason + ")" : "")))) : "—"))));
  }

  // The charts of one device, a day or a week, from the store the API says it read.
  async function charts(deviceId) {
    const holder = el("div", { class: "charts" });
    const buttons = Object.entries(SPAN).map(([span, [text]]) =>
      el("button", { "data-span": span, onclick: () => draw(span) }, text));
    async function draw(span) {
      const out = await api("GET", "/devices/" + encodeURIComponent(deviceId) +
                            "/history?span=" + span);
      // The fleet's clock ends the window: a phone's clock is often wrong.
      const end = Date.parse(out.now);
      const from = end - SPAN[span][1];
      const source = out.source === "tsdb" ? "数据来自时序数据库 from the time-series store"
        : "数据来自本服务保存的近期记录 from the fleet's own recent history";
      const drawn = FIGURES.map(([field, title, unit]) => {
        const lines = out.series.filter(s => s.field === field)
          .map(s => ({ name: s.target || field, points: s.points }));
        if (!lines.length) return null;
        const legend = lines.length > 1 || lines[0].name !== field
          ? el("div", { class: "sub" }, "目标 targets: " + lines.map(l => l.name).join(", ")) : null;
        return el("figure", { class: "chart-box", "data-field": field },
          el("figcaption", {}, title + " (" + unit + ")"), legend,
          Chart.line(title, unit, lines, from, end));
      }).filter(Boolean);
      holder.replaceChildren(...[
        el("p", { class: "sub" }, source),
        out.note ? message("error", out.note) : null,
        out.grafana_url ? el("a", { href: out.grafana_url, target: "_blank", rel: "noopener",
          class: "grafana" }, "在 Grafana 中查看 Open in Grafana") : null,
        ...(drawn.length ? drawn : [empty("还没有数据 / no data yet")])].filter(Boolean));
      for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.span === span));
    }
    await draw("day");
    return el("div", {}, el("div", { class: "inline-form" }, buttons), holder);
  }

  // A calendar app's subscription address: the person's token works for their rooms too.
  function calendarUrl(path) {
    const token = new URL(me.calendar_url, location.href).searchParams.get("token");
    return new URL(API + path + "?token=" + encodeURIComponent(token), location.href).href;
  }

  function calendarLink(path) {
    const url = calendarUrl(path);
    return el("div", { class: "calendar" },
      el("a", { href: url.replace(/^http/, "webcal"), class: "subscribe" },
        "订阅课表 Subscribe to the calendar"),
      el("div", { class: "command" }, url));
  }

  return { section, peripherals, checks, alerts, audit, charts, calendarUrl, calendarLink };
})();
