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
    const keeps = ans.retention_days;
    const retention = h("p", { id: "u-retention", class: keeps >= 180 ? "" : "error",
      text: t("u.retention", { n: keeps, verdict: t(keeps >= 180 ? "k.yes" : "k.no") }) });
    out.replaceChildren(retention, ...ans.units.map((u) => {
      const p = u.profile;
      const facts = p ? h("dl", { class: "facts" }, ...PROFILE_FIELDS.flatMap((f) => [
        h("dt", { text: t(`u.f.${f}`) }), h("dd", { text: Array.isArray(p[f]) ? p[f].join(", ") : (p[f] ?? "") })]))
        : h("p", { class: "muted", text: t("u.noprofile") });
      const officers = p ? table(["u.o.name", "u.o.cert", "u.o.phone"], (p.security_officers || []).map((o) =>
        h("tr", {}, h("td", { text: o.name }), h("td", { class: "mono", text: o.certificate_no }),
          h("td", { class: "mono", text: o.phone })))) : null;
      const agents = table(["u.a.agent", "d.status", "d.last", "u.a.ruleset", "u.a.spool", "u.a.lag", "u.a.drops"],
        u.agents.map((a) => h("tr", {},
          h("td", { class: "mono", text: a.agent }), h("td", { text: t(`d.${a.status}`) }),
          h("td", { class: "mono", text: fmtTime(a.last_upload) }),
          h("td", { text: a.health?.ruleset_version ?? "" }),
          h("td", { text: a.health ? t("u.a.spoolv", { n: a.health.spool_records, mb: (a.health.spool_bytes / 1048576).toFixed(1) })
            + (a.health.quarantined_records ? t("u.a.quarantined", { n: a.health.quarantined_records }) : "") : "" }),
          h("td", { text: a.health?.upload_lag_s ?? "" }),
          h("td", { text: a.health ? `${a.health.kernel_drops ?? 0} / ${a.health.records_dropped ?? 0}` : "" }))));
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

const MEASURE_KEYS = ["login_records", "nat_mapping", "registration", "keyword_filtering", "publishing", "mail", "retention",
  "upload", "maintenance_log"];

export function renderCompliance(main, unit) {
  const out = h("section", { "aria-live": "polite" }, h("p", { class: "muted", text: t("loading") }));
  if (!unit) {
    main.replaceChildren(h("h1", { text: t("k.title") }), out);
    Promise.all([api("/api/v1/compliance"), api("/api/v1/units")]).then(([bad, all]) => {
      const problems = Object.fromEntries(bad.units.map((u) => [u.unit, u.problems]));
      const rows = all.units.map((u) => h("tr", { class: problems[u.unit] ? "offline" : "" },
        h("td", {}, h("a", { href: `#/compliance/${encodeURIComponent(u.unit)}`, text: u.unit })),
        h("td", { text: u.profile?.name ?? "" }),
        h("td", { text: problems[u.unit] ? t("k.no") : t("k.yes") }),
        h("td", { text: (problems[u.unit] || []).join("; ") })));
      out.replaceChildren(h("p", { id: "k-count", text: t("k.count", { n: bad.units.length }) }),
        table(["d.unit", "d.name", "k.result", "k.problems"], rows, { id: "k-units" }));
    }).catch((e) => out.replaceChildren(errorBox(e)));
    return;
  }
  main.replaceChildren(h("h1", { text: t("k.unit", { unit }) }), out);
  const base = `/api/v1/units/${encodeURIComponent(unit)}/compliance`;
  api(base).then((rep) => {
    const rows = rep.measures.map((m) => {
      const ev = m.evidence;
      const facts = [ev.latest !== undefined ? `${t("k.latest")} ${fmtTime(ev.latest) || "—"}` : null,
        ev.records !== undefined ? t("k.records", { n: ev.records }) : null,
        ev.gaps?.length ? t("k.gaps", { n: ev.gaps.length, first: ev.gaps[0] }) : null,
        ev.center_retention_days !== undefined ? t("k.retention", { n: ev.center_retention_days }) : null,
        ev.latest_alert !== undefined && ev.latest_alert !== null ? `${t("k.alert")} ${fmtTime(ev.latest_alert)}` : null,
        ev.uploaded !== undefined ? `${t("k.uploaded")} ${fmtTime(ev.uploaded) || "—"}` : null,
        ...(m.notes ?? [])].filter(Boolean);
      return h("tr", { class: m.ok ? "" : "offline" }, h("td", { text: t(`k.m.${m.measure}`) }),
        h("td", { text: m.ok ? t("k.yes") : t("k.no") }), h("td", { text: facts.join("; ") }),
        h("td", { text: m.problems.join("; ") }));
    });
    out.replaceChildren(
      h("p", { id: "k-overall", class: rep.ok ? "" : "error", text: rep.ok ? t("k.allok") : t("k.notok") }),
      h("p", { class: "pager" }, h("button", { type: "button", text: t("k.print"), onclick: () => window.print() }),
        h("a", { href: `${base}?format=html`, target: "_blank", rel: "noopener", text: t("k.html") }),
        h("a", { id: "k-pdf", href: `${base}?format=pdf`, download: `compliance-${unit}.pdf`, text: t("k.pdf") })),
      table(["k.measure", "k.result", "k.evidence", "k.problems"], rows, { id: "k-measures" }));
  }).catch((e) => out.replaceChildren(errorBox(e)));
}

export function renderRulesets(main, me) {
  const out = h("section", { "aria-live": "polite" }, h("p", { class: "muted", text: t("loading") }));
  const msg = h("p", { id: "r-msg", role: "status" });
  const file = h("input", { id: "r-file", type: "file", accept: ".bundle,.tar,application/x-tar", required: true });
  const form = me.role === "admin" ? h("form", { class: "query", onsubmit: async (ev) => {
    ev.preventDefault();
    if (!file.files.length) return;
    try {
      const ans = await api("/api/v1/rulesets/current", { method: "PUT", raw: await file.files[0].arrayBuffer(),
        type: "application/x-tar" });
      msg.textContent = t("r.published", { name: ans.name, version: ans.version });
      load();
    } catch (e) { msg.textContent = `${t("r.refused")}: ${e.message}`; }
  } }, h("label", {}, t("r.file"), file), h("button", { type: "submit", class: "primary", text: t("r.publish") })) : null;
  const load = () => api("/api/v1/rulesets").then((ans) => {
    const hist = table(["r.version", "r.name", "r.by", "r.when", "r.etag"], ans.history.map((x, i) => h("tr", {},
      h("td", { text: `${x.version}${i === 0 ? ` (${t("r.current")})` : ""}` }), h("td", { text: x.name }),
      h("td", { text: x.by }), h("td", { class: "mono", text: fmtTime(x.published) }),
      h("td", { class: "mono", text: x.etag.slice(1, 13) }))), { id: "r-history" });
    const agents = table(["u.a.agent", "d.unit", "r.version", "r.when", "k.result"], ans.agents.map((a) => h("tr",
      { class: a.current ? "" : "offline" }, h("td", { class: "mono", text: a.agent }), h("td", { text: a.unit }),
      h("td", { text: a.version ?? (a.etag ? t("r.unknown") : t("r.never")) }),
      h("td", { class: "mono", text: fmtTime(a.fetched) }),
      h("td", { text: a.current ? t("r.uptodate") : t("r.behind") }))), { id: "r-agents" });
    out.replaceChildren(h("h2", { text: t("r.history") }), ans.history.length ? hist : h("p", { text: t("r.none") }),
      h("h2", { text: t("r.agents") }), agents);
  }).catch((e) => out.replaceChildren(errorBox(e)));
  main.replaceChildren(h("h1", { text: t("r.title") }), ...(form ? [form] : []), msg, out);
  load();
}
