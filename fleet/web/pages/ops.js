// #ops: the audit log, silences, maintenance windows and holidays, the inventory
// (schools, classrooms, devices; admins and county technicians add and edit within
// their scope, which the API enforces), and the person's calendar subscription.
"use strict";

(() => {
  const KIND = { town: "城镇 town (gives)", rural: "乡村 rural (receives)" };

  function form(id, fields, label, send) {
    const status = el("div");
    const node = el("form", { class: "inline-form", id }, fields,
      el("button", { type: "submit", class: "primary" }, label), status);
    node.addEventListener("submit", async event => {
      event.preventDefault();
      try {
        await send(new FormData(node));
        await Pages.show(true);
      } catch (error) { status.replaceChildren(message("error", error.message)); }
    });
    return node;
  }

  function input(name, placeholder, optional) {
    const attrs = { type: "text", name, placeholder, "aria-label": placeholder };
    return el("input", optional ? attrs : Object.assign(attrs, { required: "" }));
  }

  function select(name, label, options) {
    return el("select", { name, "aria-label": label, required: "" },
      options.map(([value, text]) => el("option", { value: String(value) }, text)));
  }

  // Renaming opens a small form in place of the button (a school or a classroom).
  function rename(path, current) {
    const cell = el("div");
    const button = el("button", { onclick: () => {
      const name = el("input", { type: "text", name: "name", value: current, required: "",
                                 "aria-label": "新名称 new name" });
      cell.replaceChildren(form("rename-" + path.replace(/\W/g, "-"), [name],
        "保存 Save", () => api("PATCH", path, { name: name.value.trim() })));
      name.focus();
    } }, "改名 Rename");
    cell.append(button);
    return cell;
  }

  function silences(list) {
    if (!list.length) return empty("没有静默 / no silences");
    return table(["范围 Applies to", "时间 When", "说明 Comment", "操作 Actions"], list.map(s => {
      const status = el("div");
      return el("tr", { "data-silence": s.id },
        el("td", {}, Object.entries(s.matchers).map(([k, v]) => k + "=" + v).join(", ")),
        el("td", {}, when(s.starts_at) + " – " + when(s.ends_at)),
        el("td", {}, s.comment, el("div", { class: "sub" }, s.created_by)),
        el("td", {}, el("button", { class: "danger", onclick: async () => {
          if (!confirm("结束这个静默？ / End this silence?")) return;
          try { await api("DELETE", "/silences/" + s.id); await Pages.show(true); }
          catch (error) { status.replaceChildren(message("error", error.message)); }
        } }, "结束 End"), status));
    }));
  }

  function windows(list) {
    if (!list.length) return empty("没有维护时段 / no maintenance windows");
    return table(["名称 Name", "星期 Days", "时间 Time"], list.map(w => el("tr", { "data-window": w.id },
      el("td", {}, w.name), el("td", {}, w.weekdays.map(d => WEEKDAYS[d]).join(" ")),
      el("td", {}, w.start_time + "–" + w.end_time))));
  }

  function holidays(list) {
    if (!list.length) return empty("近期没有节假日 / no holidays ahead");
    return el("ul", { class: "why" }, list.map(h => el("li", { "data-holiday": h.day },
      h.day + " " + h.name)));
  }

  function inventory(counties, schools, classrooms, devices) {
    const rooms = withSchool(classrooms, schools);
    const writer = isWriter();
    const schoolTable = table(["学校 School", "类型 Kind", "操作 Actions"], schools.map(s =>
      el("tr", { "data-school": s.id }, el("td", {}, s.name), el("td", {}, KIND[s.kind] || s.kind),
        el("td", {}, writer ? rename("/schools/" + s.id, s.name) : null))));
    const roomTable = table(["教室 Classroom", "日历 Calendar", "操作 Actions"], rooms.map(r =>
      el("tr", { "data-room": r.id },
        el("td", {}, el("a", { href: "#classroom-" + r.id }, room(r))),
        el("td", {}, el("a", { href: Parts.calendarUrl("/classrooms/" + r.id + "/calendar.ics") },
          "课表 .ics")),
        el("td", {}, writer ? rename("/classrooms/" + r.id, r.name) : null))));
    const deviceTable = table(["设备 Device", "教室 Classroom", "状态 State", "操作 Actions"], devices.map(d => {
      const status = el("div");
      return el("tr", { "data-inventory-device": d.id },
        el("td", {}, el("a", { href: "#device-" + d.id }, d.id)),
        el("td", {}, d.school + " " + d.classroom),
        el("td", {}, deviceBadge(d)),
        el("td", {}, writer ? el("button", { onclick: async () => {
          try {
            await api("PATCH", "/devices/" + encodeURIComponent(d.id), { enabled: !d.enabled });
            await Pages.show(true);
          } catch (error) { status.replaceChildren(message("error", error.message)); }
        } }, d.enabled ? "停用 Disable" : "启用 Enable") : null, status));
    }));
    const forms = writer ? {
      school: form("add-school", [
        input("name", "学校名称 school name"),
        select("kind", "类型 kind", Object.entries(KIND)),
        select("county_id", "区县 county", counties.map(c => [c.id, c.name]))],
        "添加学校 Add school", data => api("POST", "/schools", {
          name: data.get("name").trim(), kind: data.get("kind"),
          county_id: Number(data.get("county_id")) })),
      room: form("add-classroom", [
        select("school_id", "学校 school", schools.map(s => [s.id, s.name])),
        input("name", "教室名称 classroom name")],
        "添加教室 Add classroom", data => api("POST", "/classrooms", {
          school_id: Number(data.get("school_id")), name: data.get("name").trim() })),
      device: form("add-device", [
        input("id", "设备标识 device id (e.g. dongtou-luxi-sync2)"),
        select("classroom_id", "教室 classroom", rooms.map(r => [r.id, room(r)])),
        input("address", "地址 address (optional)", true)],
        "添加设备 Add device", data => api("POST", "/devices", {
          id: data.get("id").trim(), classroom_id: Number(data.get("classroom_id")),
          address: data.get("address").trim() })),
    } : {};
    return [
      el("h3", {}, "学校 Schools"), schoolTable, forms.school || null,
      el("h3", {}, "教室 Classrooms"), roomTable, forms.room || null,
      el("h3", {}, "设备 Devices"), deviceTable, forms.device || null,
    ];
  }

  Pages.register(/^#ops$/, async (match, page) => {
    const [audit, silenceList, windowList, holidayList, counties, schools, rooms, devices] =
      await Promise.all([
        Parts.audit("", 50), api("GET", "/silences"), api("GET", "/maintenance-windows"),
        api("GET", "/holidays"), api("GET", "/counties"), api("GET", "/schools"),
        api("GET", "/classrooms"), api("GET", "/devices")]);
    page.replaceChildren(
      Parts.section("ops-calendar", "我的课表订阅", "My calendar subscription",
        Parts.calendarLink("/people/" + me.id + "/calendar.ics")),
      Parts.section("ops-inventory", "资产", "Inventory", ...inventory(counties, schools, rooms, devices)),
      Parts.section("ops-silences", "静默", "Silences", silences(silenceList)),
      Parts.section("ops-windows", "维护时段", "Maintenance windows", windows(windowList)),
      Parts.section("ops-holidays", "节假日", "Holidays", holidays(holidayList)),
      Parts.section("ops-audit", "操作审计", "Audit log", audit));
  });
})();
