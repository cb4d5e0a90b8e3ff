// Live updates: the server's event stream (/api/v1/live, the session cookie) says what
// changed in this person's scope; the page then re-reads what it shows through the same
// scoped API, without a reload.  New alerts since the person last touched the page (a
// click, a key, the tab coming back into sight) are counted in the tab title; if they
// opted in, each new critical alert is also a browser notification.
"use strict";

const LIVE_TITLE = document.title;
let liveSource = null;
let liveUnread = 0;
let liveRefreshing = null;

// Many events in a burst (a storm of alerts) make one refresh, not one each.
function liveRefresh() {
  if (liveRefreshing) return;
  liveRefreshing = setTimeout(async () => {
    liveRefreshing = null;
    if (me) await refresh();
  }, 300);
}

function liveTitle() {
  document.title = liveUnread ? "(" + liveUnread + ") " + LIVE_TITLE : LIVE_TITLE;
}

// On the page and on the wall: a wall nobody touches must say when it stopped hearing.
function liveState(on) {
  for (const mark of document.querySelectorAll(".live-state")) {
    mark.dataset.live = on ? "on" : "off";
    mark.textContent = on ? "● 实时 live" : "○ 重新连接中 reconnecting";
  }
}

function liveNews(alerts) {
  const news = alerts.filter(a => a.news && a.state !== "resolved");
  liveUnread += news.length;
  liveTitle();
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  for (const alert of news.filter(a => a.severity === "critical")) {
    const note = new Notification("严重告警 critical alert #" + alert.id,
      { body: alert.summary_zh + "\n" + alert.summary_en, tag: "alert-" + alert.id,
        icon: "/static/favicon.svg" });
    note.onclick = () => { window.focus(); location.hash = "#alert-" + alert.id; };
  }
}

function liveStart() {
  liveStop();
  liveSource = new EventSource(API + "/live");
  // A reconnection may have missed something: read everything once (the first
  // connection opens as the page reads everything anyway).
  let first = true;
  liveSource.addEventListener("hello", () => {
    liveState(true);
    if (!first) liveRefresh();
    first = false;
  });
  liveSource.addEventListener("change", event => {
    liveNews(JSON.parse(event.data).alerts);
    liveRefresh();  // the other pages follow app.js's refresh (syncclass:refreshed)
  });
  liveSource.onerror = async () => {
    liveState(false);
    // The browser reconnects by itself unless the server refused the stream; a refused
    // one is usually an ended session, which the next API call finds out (401 logs out).
    if (liveSource && liveSource.readyState === EventSource.CLOSED) {
      try { await api("GET", "/me"); setTimeout(() => { if (me) liveStart(); }, 5000); }
      catch (error) { /* logged out */ }
    }
  };
}

function liveStop() {
  if (liveSource) liveSource.close();
  liveSource = null;
}

// Opt-in only: a technician asks for it once, on this browser.
function liveNotifyButton() {
  const button = document.getElementById("notify-optin");
  if (!("Notification" in window) || Notification.permission === "granted") {
    button.classList.add("hidden");
    return;
  }
  button.classList.remove("hidden");
  button.onclick = async () => {
    const answer = await Notification.requestPermission();
    button.textContent = answer === "granted" ? "已开启 on"
      : "浏览器拒绝了通知 / notifications blocked by the browser";
    if (answer === "granted") button.classList.add("hidden");
  };
}

function liveSeen() {
  if (!liveUnread || document.hidden) return;
  liveUnread = 0;
  liveTitle();
}
for (const name of ["visibilitychange", "pointerdown", "keydown"]) {
  document.addEventListener(name, liveSeen);
}
window.addEventListener("focus", liveSeen);
