// #reports: lessons ready at their start, alerts, mean time to acknowledge and to
// repair, and availability per county, school, pair or classroom, as a table and a bar
// chart in percentages and minutes, with the same report as CSV for Excel.
"use strict";

(() => {
  const LEVELS = { county: "区县 county", school: "学校 school", pair: "结对 pair",
                   classroom: "教室 classroom" };

  function pct(part, whole) { return whole ? (part / whole * 100).toFixed(1) + "%" : "—"; }
  function minutes(s) {
    if (s === null) return "—";
    return s < 60 ? Math.round(s) + " 秒 s" : (s / 60).toFixed(1) + " 分钟 min";
  }
  function share(v) { return v === null ? "—" : (v * 100).toFixed(2) + "%"; }

  function query(level, from, to, fmt) {
    const q = new URLSearchParams();
    if (from) q.set("from", from);
    if (to) q.set("to", to);
    if (fmt) q.set("format", fmt);
    return "/reports/" + level + (q.toString() ? "?" + q : "");
  }

  Pages.register(/^#reports$/, async (match, page) => {
    const level = el("select", { id: "report-level", "aria-label": "级别 level" },
      Object.entries(LEVELS).map(([v, t]) => el("option", { value: v }, t)));
    const from = el("input", { type: "date", id: "report-from", "aria-label": "从 from" });
    const to = el("input", { type: "date", id: "report-to", "aria-label": "到 to" });
    const csv = el("a", { id: "report-csv", class: "button-link" }, "下载 CSV Download CSV");
    const result = el("div", { id: "report-result" });
    const form = el("form", { class: "inline-form", id: "report-form" },
      el("label", {}, "级别 Level ", level), el("label", {}, "从 From ", from),
      el("label", {}, "到 To ", to),
      el("button", { type: "submit", class: "primary" }, "查看 Show"), csv);
    async function load() {
      csv.setAttribute("href", API + query(level.value, from.value, to.value, "csv"));
      try {
        const rows = await api("GET", query(level.value, from.value, to.value));
        if (rows.length && !from.value) { from.value = rows[0].start; to.value = rows[0].end; }
        if (!rows.length) { result.replaceChildren(empty("没有数据 / no data")); return; }
        result.replaceChildren(
          table(["名称 Name", "课程就绪 Lessons ready", "告警 Alerts", "平均确认 MTTA",
                 "平均修复 MTTR", "可用率 Availability"], rows.map(r =>
            el("tr", { "data-unit": r.unit_id },
              el("td", {}, r.name),
              el("td", {}, pct(r.lessons_ready, r.lessons_scheduled),
                el("div", { class: "sub" }, r.lessons_ready + " / " + r.lessons_scheduled)),
              el("td", {}, String(r.alerts)),
              el("td", {}, minutes(r.mtta_s)),
              el("td", {}, minutes(r.mttr_s)),
              el("td", {}, share(r.availability))))),
          el("figure", { class: "chart-box" },
            el("figcaption", {}, "可用率 Availability"),
            Chart.bars("可用率 Availability", rows.map(r => ({ name: r.name, value: r.availability })))),
          el("figure", { class: "chart-box" },
            el("figcaption", {}, "课前就绪率 Lessons ready at start"),
            Chart.bars("课前就绪率 Lessons ready at start", rows.map(r => ({ name: r.name,
              value: r.lessons_scheduled ? r.lessons_ready / r.lessons_scheduled : null })))));
      } catch (error) { result.replaceChildren(message("error", error.message)); }
    }
    form.addEventListener("submit", event => { event.preventDefault(); load(); });
    level.addEventListener("change", load);
    page.replaceChildren(Parts.section("reports-page", "报表", "Reports", form, result));
    await load();
  });
})();
