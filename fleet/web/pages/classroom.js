// #classroom-N: a classroom with each of its devices (state, peripherals, last check,
// charts), its alerts with their timeline, the actions on its devices, and the address
// a calendar app subscribes to for its lessons.
"use strict";

Pages.register(/^#classroom-(\d+)$/, async (match, page) => {
  const id = Number(match[1]);
  const [room, devices] = await Promise.all([
    api("GET", "/classrooms/" + id), api("GET", "/devices?classroom_id=" + id)]);
  const school = await api("GET", "/schools/" + room.school_id);
  const cards = await Promise.all(devices.map(async device => {
    const [peripherals, checks, charts] = await Promise.all([
      Parts.peripherals(device.id), Parts.checks(device.id), Parts.charts(device.id)]);
    return el("article", { class: "device-card", "data-device": device.id },
      el("div", { class: "end-head" }, el("a", { href: "#device-" + device.id }, device.id),
        deviceBadge(device),
        el("span", { class: "sub" }, "最近上报 last seen " + when(device.health && device.health.last_seen))),
      el("h3", {}, "外设 Peripherals"), peripherals,
      el("h3", {}, "最近检查 Latest checks"), checks,
      el("h3", {}, "网络与温度 Network and temperature"), charts);
  }));
  const [alerts, ...audits] = await Promise.all([Parts.alerts("classroom_id=" + id),
    ...devices.map(d => Parts.audit("device_id=" + encodeURIComponent(d.id), 5))]);
  const alertList = el("div", {}, alerts);
  page.replaceChildren(
    el("section", { id: "classroom-head", "data-classroom-page": id },
      el("h2", {}, school.name + " " + room.name, el("small", {}, "教室 Classroom")),
      Parts.calendarLink("/classrooms/" + id + "/calendar.ics")),
    Parts.section("classroom-alerts", "告警", "Open and recent alerts", alertList),
    Parts.section("classroom-devices", "设备", "Devices",
      ...(cards.length ? cards : [empty("教室没有设备 / no device in this classroom")])),
    Parts.section("classroom-audit", "最近操作", "Recent actions and answers",
      ...(audits.length ? audits : [empty("没有操作记录 / no actions yet")])));
  // On each refresh: the alerts (the devices' re-runs and chart spans stay as they are).
  return async () => alertList.replaceChildren(await Parts.alerts("classroom_id=" + id));
});
