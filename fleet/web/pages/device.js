// #device-ID: one classroom mini-PC: its state, peripherals against the baseline, the
// latest checks (with a re-run), its alerts with their timeline, its recent actions and
// the agent's answers, and its charts over the last day or week.
"use strict";

(() => {
  function head(device) {
    const health = device.health;
    return el("div", { class: "device-state" },
      el("div", { class: "end-head" }, deviceBadge(device),
        el("a", { href: "#classroom-" + device.classroom_id }, device.school + " " + device.classroom)),
      el("div", { class: "sub" }, "最近上报 last seen " + when(health && health.last_seen) +
        (health && health.agent_version ? " · agent " + health.agent_version : "") +
        (device.address ? " · " + device.address : "")),
      health && health.problems.length ? el("ul", { class: "why" }, health.problems.map(p =>
        el("li", { class: "finding fail" }, p.message))) : null);
  }

  Pages.register(/^#device-([A-Za-z0-9._-]+)$/, async (match, page) => {
    const id = match[1];
    const path = "/devices/" + encodeURIComponent(id);
    const query = "device_id=" + encodeURIComponent(id);
    const [device, peripherals, checks, alerts, audit, charts] = await Promise.all([
      api("GET", path), Parts.peripherals(id), Parts.checks(id), Parts.alerts(query),
      Parts.audit(query), Parts.charts(id)]);
    const state = el("div", {}, head(device));
    const alertList = el("div", {}, alerts);
    page.replaceChildren(
      el("section", { id: "device-head", "data-device-page": device.id },
        el("h2", {}, "设备 ", device.id, el("small", {}, "Device")), state),
      Parts.section("device-peripherals", "外设", "Peripherals against the baseline", peripherals),
      Parts.section("device-checks", "最近检查", "Latest checks", checks),
      Parts.section("device-alerts", "告警", "Open and recent alerts", alertList),
      Parts.section("device-charts", "网络与温度", "Network and temperature", charts),
      Parts.section("device-audit", "最近操作", "Recent actions and answers", audit));
    // On each refresh: the state and the alerts (a re-run or a chart span stays as it is).
    return async () => {
      const [fresh, list] = await Promise.all([api("GET", path), Parts.alerts(query)]);
      state.replaceChildren(head(fresh));
      alertList.replaceChildren(list);
    };
  });
})();
