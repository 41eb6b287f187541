// The UI's shell: who is logged in, the language toggle, and the hash router.
import { api } from "./api.js";
import { getLang, setLang, t, translateStatic } from "./i18n.js";
import { renderAudit, renderCompliance, renderRulesets, renderUnits, renderUsers } from "./admin.js";
import { leaveDashboard, renderDashboard } from "./dashboard.js";
import { loadSchema, renderConnection, renderLogin, renderSearch, renderTraceback, schemaLoaded } from "./pages.js";

let me = null;

function showUser() {
  const who = document.getElementById("who");
  who.textContent = me ? t("login.as", { name: me.name, role: t(`role.${me.role}`) }) : "";
  document.getElementById("nav").hidden = !me;
  document.getElementById("logout").hidden = !me;
  document.getElementById("lang").textContent = t("lang.other");
}

function route() {
  const main = document.getElementById("main");
  translateStatic();
  showUser();
  if (!me) {
    renderLogin(main, (user) => { me = user; route(); });
    return;
  }
  if (!schemaLoaded()) {  // the record types' metadata, once per login (pages.js)
    loadSchema().then(route, () => { me = null; route(); });
    return;
  }
  const home = me.role === "auditor" ? "/audit" : "/dashboard";
  let [path, qs] = (location.hash.slice(1) || home).split("?");
  if (path === "/login") path = home;
  const params = new URLSearchParams(qs || "");
  for (const a of document.querySelectorAll("#nav a")) {
    // a role's menu shows what it may use; the server decides whatever the menu shows
    a.hidden = !a.dataset.roles.split(" ").includes(me.role);
    const here = a.getAttribute("href") === `#${path}` || path.startsWith(`${a.getAttribute("href").slice(1)}/`);
    if (here) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  leaveDashboard();
  if (path.startsWith("/connection/")) renderConnection(main, decodeURIComponent(path.slice(12)), params);
  else if (path === "/search") renderSearch(main, params);
  else if (path === "/traceback") renderTraceback(main, params, me);
  else if (path === "/units") renderUnits(main, params, me);
  else if (path === "/rulesets") renderRulesets(main, me);
  else if (path === "/compliance" || path.startsWith("/compliance/")) {
    renderCompliance(main, path.length > 12 ? decodeURIComponent(path.slice(12)) : null);
  }
  else if (path === "/audit") renderAudit(main, params);
  else if (path === "/users") renderUsers(main);
  else if (me.role === "auditor") renderAudit(main, params);
  else renderDashboard(main);
}

async function start() {
  setLang(getLang());
  document.getElementById("lang").addEventListener("click", () => { setLang(getLang() === "zh" ? "en" : "zh"); route(); });
  document.getElementById("logout").addEventListener("click", async () => {
    await api("/api/v1/session", { method: "DELETE" }).catch(() => {});
    me = null;
    leaveDashboard();
    location.hash = "#/login";
    route();
  });
  try { me = await api("/api/v1/session"); } catch { me = null; }
  window.addEventListener("hashchange", route);
  route();
}

start();
