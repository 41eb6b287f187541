// The unit registry, the audit log (auditors) and user management (admins).
import { api, query } from "./api.js";
import { t } from "./i18n.js";
import { fmtTime, h } from "./pages.js";

const PROFILE_FIELDS = ["name", "legal_representative", "address", "postal_code", "phone", "industry", "isp",
  "access_method", "ip_ranges", "egress_ips", "dns_servers", "mail_servers", "services", "security_measures"];

function errorBox(e) { return h("p", { class: "error", role: "alert", text: e.message || String(e) }); }

function table(headKeys, rows, attrs = {}) {
  return h("table", attrs, h("thead", {}, h("tr", {}, ...headKeys.map((k) => h("th", { scope: "col", text: t(k) })))),
    h("tbody", {}, rows));
}

export function renderUnits(main, params, me) {
  const personal = params.get("personal") === "1" && me.role === "admin";
  const out = h("section", { "aria-live": "polite" }, h("p", { class: "muted", text: t("loading") }));
  const toggle = me.role === "admin" ? [h("p", {}, h("a", { href: personal ? "#/units" : "#/units?personal=1",
    text: t(personal ? "u.hide" : "u.show") }))] : [];
  main.replaceChildren(h("h1", { text: t("u.title") }), ...toggle, out);
  api(`/api/v1/units?${query({ personal: personal ? 1 : undefined })}`).then((ans) => {
    out.replaceChildren(...ans.units.map((u) => {
      const p = u.profile;
      const facts = p ? h("dl", { class: "facts" }, ...PROFILE_FIELDS.flatMap((f) => [
        h("dt", { text: t(`u.f.${f}`) }), h("dd", { text: Array.isArray(p[f]) ? p[f].join(", ") : (p[f] ?? "") })]))
        : h("p", { class: "muted", text: t("u.noprofile") });
      const officers = p ? table(["u.o.name", "u.o.cert", "u.o.phone"], (p.security_officers || []).map((o) =>
        h("tr", {}, h("td", { text: o.name }), h("td", { class: "mono", text: o.certificate_no }),
          h("td", { class: "mono", text: o.phone })))) : null;
      const agents = table(["u.a.agent", "d.status", "d.last"], u.agents.map((a) => h("tr", {},
        h("td", { class: "mono", text: a.agent }), h("td", { text: t(`d.${a.status}`) }),
        h("td", { class: "mono", text: fmtTime(a.last_upload) }))));
      return h("article", { class: "card", id: `unit-${u.unit}` }, h("h2", { text: `${u.unit} ${p?.name ?? ""}` }),
        facts, p ? h("h3", { text: t("u.officers") }) : null, officers, h("h3", { text: t("u.agents") }), agents);
    }));
  }).catch((e) => out.replaceChildren(errorBox(e)));
}

export function renderAudit(main, params) {
  const out = h("section", { "aria-live": "polite" }, h("p", { class: "muted", text: t("loading") }));
  main.replaceChildren(h("h1", { text: t("a.title") }), out);
  api(`/api/v1/audit?${query({ limit: 100, before: params.get("before") })}`).then((ans) => {
    const v = ans.verify;
    const status = h("p", { id: "a-verify", class: v.ok ? "" : "error", role: v.ok ? null : "alert",
      text: v.ok ? t("a.ok", { n: v.entries, anchor: v.anchor ?? "" }) : t("a.bad", { line: v.line, problem: v.problem }) });
    const rows = ans.entries.map((e) => h("tr", {}, h("td", { class: "mono", text: e.seq ?? "" }),
      h("td", { class: "mono", text: e.ts ?? "" }), h("td", { text: e.actor ?? "" }), h("td", { text: e.action ?? e.damaged }),
      h("td", { class: "mono", text: e.target ?? "" }), h("td", { text: e.result ?? "" })));
    const last = ans.entries.at(-1);
    const more = last && last.seq > 1 ? h("a", { href: `#/audit?before=${last.seq}`, text: t("s.next") }) : null;
    out.replaceChildren(status, table(["a.seq", "a.ts", "a.actor", "a.action", "a.target", "a.result"], rows),
      ...(more ? [more] : []));
  }).catch((e) => out.replaceChildren(errorBox(e)));
}

export function renderUsers(main) {
  const out = h("section", { "aria-live": "polite" });
  const name = h("input", { id: "user-name", required: true, autocomplete: "off" });
  const role = h("select", { id: "user-role" }, ...["operator", "auditor", "admin"].map((r) => h("option", { value: r, text: t(`role.${r}`) })));
  const made = h("p", { id: "user-made", role: "status" });
  const load = () => api("/api/v1/users").then((ans) => out.replaceChildren(table(["login.name", "u.role", "d.status", "u.action"],
    ans.users.map((u) => h("tr", {}, h("td", { class: "mono", text: u.name }), h("td", { text: t(`role.${u.role}`) }),
      h("td", { text: u.disabled ? t("u.disabled") : t("u.enabled") }),
      h("td", {}, u.disabled ? null : h("button", { type: "button", text: t("u.disable"), onclick: async () => {
        try { await api(`/api/v1/users/${encodeURIComponent(u.name)}/disable`, { method: "POST" }); load(); } catch (e) { made.textContent = e.message; }
      } })))), { id: "users" }))).catch((e) => out.replaceChildren(errorBox(e)));
  const form = h("form", { class: "query", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const ans = await api("/api/v1/users", { method: "POST", body: { name: name.value.trim(), role: role.value } });
      made.textContent = t("u.made", { name: ans.name, password: ans.password });
      name.value = "";
      load();
    } catch (e) { made.textContent = e.message; }
  } }, h("label", {}, t("login.name"), name), h("label", {}, t("u.role"), role),
  h("button", { type: "submit", class: "primary", text: t("u.add") }));
  main.replaceChildren(h("h1", { text: t("u.users") }), form, made, out);
  load();
}
