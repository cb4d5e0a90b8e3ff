// Hash routes of the pages beyond today's overview: #classroom-N, #device-ID, #ops,
// #reports.  Any other hash (#alert-N, none) is the overview app.js draws.  While a page
// is shown the overview's sections are hidden (CSS on #app.paged), not torn down.
"use strict";

const Pages = (() => {
  const routes = [];
  let shown = null;  // the hash the page on screen was drawn for
  let update = null;  // what the page on screen redraws when the overview refreshes

  function register(pattern, render) { routes.push({ pattern, render }); }

  function nav() {
    const links = [["#", "今日 Today"], ["#ops", "运维 Operations"], ["#reports", "报表 Reports"]];
    return el("nav", { id: "nav", "aria-label": "页面 pages" }, links.map(([href, text]) =>
      el("a", { href, class: "nav-link" }, text)));
  }

  async function show(force) {
    if (!me) return;
    const app = document.getElementById("app");
    if (!document.getElementById("nav")) app.prepend(nav());
    const hash = location.hash;
    for (const link of document.querySelectorAll("#nav a")) {
      const current = link.getAttribute("href") === (hash || "#") ||
        (link.getAttribute("href") === "#" && !routes.some(r => r.pattern.test(hash)));
      if (current) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    const route = routes.find(r => r.pattern.test(hash));
    const page = document.getElementById("page");
    app.classList.toggle("paged", !!route);
    if (!route) { shown = null; update = null; page.replaceChildren(); return; }
    if (shown === hash && !force) return;
    shown = hash;
    update = null;
    page.replaceChildren(el("p", { class: "updated" }, "加载中 loading…"));
    window.scrollTo(0, 0);
    try {
      // A page may return a function redrawing what changes (its alerts, its state)
      // without losing what the person has open, called on each refresh (live or timed).
      update = (await route.render(route.pattern.exec(hash), page)) || null;
    } catch (error) {
      page.replaceChildren(message("error", error.message));
    }
  }

  window.addEventListener("hashchange", () => show(false));
  document.addEventListener("syncclass:refreshed", async () => {
    if (!update || shown !== location.hash) return;
    try { await update(); } catch (error) { /* the next refresh tries again */ }
  });
  document.addEventListener("syncclass:login", () => show(true));
  document.addEventListener("syncclass:logout", () => {
    shown = null;
    update = null;
    document.getElementById("page").replaceChildren();
  });

  return { register, show };
})();
