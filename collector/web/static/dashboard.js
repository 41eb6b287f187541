// The dashboard: units on and off line, records per hour, and alerts arriving live (SSE).
import { api } from "./api.js";
import { t } from "./i18n.js";
import { fmtTime, h, recordsTable } from "./pages.js";

const SVG = "http://www.w3.org/2000/svg";
let feed = null; // the open EventSource, closed when the page changes

export function leaveDashboard() {
  if (feed) { feed.close(); feed = null; }
}

function chart(hours) {
  const total = hours.reduce((n, x) => n + x.records, 0);
  const max = Math.max(1, ...hours.map((x) => x.records));
  const w = 24 * 22, hgt = 120;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${hgt + 18}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", t("d.chart", { n: total }));
  hours.forEach((x, i) => {
    const bh = Math.round((x.records / max) * hgt);
    const r = document.createElementNS(SVG, "rect");
    r.setAttribute("x", String(i * 22 + 2));
    r.setAttribute("y", String(hgt - bh));
    r.setAttribute("width", "18");
    r.setAttribute("height", String(Math.max(bh, x.records ? 1 : 0)));
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${fmtTime(x.hour).slice(0, 13)}:00 — ${x.records}`;
    r.append(title);
    svg.append(r);
    if (i % 6 === 0) {
      const label = document.createElementNS(SVG, "text");
      label.setAttribute("x", String(i * 22 + 2));
      label.setAttribute("y", String(hgt + 14));
      label.textContent = fmtTime(x.hour).slice(11, 13) + ":00";
      svg.append(label);
    }
  });
  return h("figure", {}, svg, h("figcaption", { class: "muted", text: t("d.chart", { n: total }) }));
}

function unitsTable(units) {
  const head = h("tr", {}, ...["d.unit", "d.name", "d.status", "d.last"].map((k) => h("th", { scope: "col", text: t(k) })));
  const rows = units.map((u) => {
    const states = u.agents.map((a) => `${a.agent}: ${t(`d.${a.status}`)}`).join(", ");
    const online = u.agents.some((a) => a.status === "online");
    return h("tr", { class: online ? "" : "offline" }, h("td", { class: "mono", text: u.unit }),
      h("td", { text: u.profile?.name ?? "" }), h("td", { text: states }), h("td", { class: "mono", text: fmtTime(u.last_upload) }));
  });
  return h("table", { id: "d-units" }, h("thead", {}, head), h("tbody", {}, rows));
}

export function renderDashboard(main) {
  leaveDashboard();
  const units = h("section", { "aria-labelledby": "d-units-h" }, h("h2", { id: "d-units-h", text: t("d.units") }));
  const hourly = h("section", {}, h("h2", { text: t("d.hourly") }));
  const state = h("p", { class: "muted", id: "d-feed", "aria-live": "polite" });
  const alerts = [];
  const list = h("div", { id: "d-alerts" }, h("p", { class: "muted", text: t("d.noalerts") }));
  const live = h("section", {}, h("h2", { text: t("d.alerts") }), state, list);
  main.replaceChildren(h("h1", { text: t("d.title") }), live, units, hourly);
  api("/api/v1/units").then((ans) => units.append(unitsTable(ans.units))).catch((e) => units.append(h("p", { class: "error", text: e.message })));
  api("/api/v1/stats/hourly?hours=24").then((ans) => hourly.append(chart(ans.hours))).catch((e) => hourly.append(h("p", { class: "error", text: e.message })));
  feed = new EventSource("/api/v1/events");
  feed.addEventListener("open", () => { state.textContent = t("d.live"); });
  feed.addEventListener("error", () => { state.textContent = t("d.reconnecting"); });
  feed.addEventListener("alert", (ev) => {
    alerts.unshift(JSON.parse(ev.data));
    alerts.length = Math.min(alerts.length, 50);
    list.replaceChildren(recordsTable(alerts));
  });
}
