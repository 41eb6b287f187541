// The pages: each `render*` fills <main> from the API; text through i18n.t, data only as text
// nodes (never HTML), so nothing a record holds can run in the page.
import { api, ApiError, query } from "./api.js";
import { t } from "./i18n.js";

// What the collector knows of each record type (GET /api/v1/schema: wire.records.RECORDS):
// the search form's type list, the list's detail column, where a type keeps its addresses and
// its account. Loaded once after login (`loadSchema`); nothing here names a type's fields.
let schema = { records: {} };

export async function loadSchema() {
  schema = await api("/api/v1/schema");
  return schema;
}

export function schemaLoaded() { return Object.keys(schema.records).length > 0; }

// the types offered in the record search
export function listedTypes() {
  return Object.entries(schema.records).filter(([, m]) => m.listed).map(([name]) => name);
}

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

function field(label, input) { return h("label", {}, label, input); }

export function fmtTime(ts) {
  if (ts === null || ts === undefined) return "";
  const d = new Date(Number(ts) * 1000);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

// <input type="datetime-local" step="1"> value <-> Unix seconds (the browser's zone)
function toInputTime(ts) { return fmtTime(ts).replace(" ", "T"); }
function fromInputTime(v) { return v ? Math.floor(new Date(v).getTime() / 1000) : ""; }

function endpoint(ip, port) { return ip ? (port !== null && port !== undefined ? `${ip}:${port}` : ip) : ""; }

// one field of the detail column: a true flag shows its name, a list its items, nothing when empty
function fieldText(name, v) {
  if (v === null || v === undefined || v === false || v === "") return null;
  if (v === true) return name;
  if (Array.isArray(v)) return v.length ? v.join(", ") : null;
  return String(v);
}

const FLOW_ENDPOINTS = ["src_ip", "src_port", "dst_ip", "dst_port", "nat_ip", "nat_port"];

function meta(r) { return schema.records[r.type]; }

function detail(r) {
  const m = meta(r);
  if (!m) return r.name || r.detail || "";  // a type this collector does not know
  return m.detail.map((f) => fieldText(f, r[f])).filter((x) => x !== null).join(" ");
}

function src(r) {
  const m = meta(r);
  const e = m ? m.endpoints : FLOW_ENDPOINTS;
  const ip = r[e[0]] ?? (m ? m.addresses.map((f) => r[f]).find((x) => x) : undefined);
  return endpoint(ip, r[e[1]]);
}
function dst(r) { const e = meta(r)?.endpoints ?? FLOW_ENDPOINTS; return endpoint(r[e[2]], r[e[3]]); }
function account(r) {
  for (const f of meta(r)?.accounts ?? ["account"]) if (r[f]) return r[f];
  return "";
}

export function recordsTable(records, { connectionLinks = true } = {}) {
  const head = h("tr", {}, ...["col.time", "col.type", "col.src", "col.dst", "col.account", "col.detail", "col.agent"]
    .map((k) => h("th", { scope: "col", text: t(k) })));
  const rows = records.map((r) => h("tr", {},
    h("td", { class: "mono", text: fmtTime(r.ts) }),
    h("td", { text: r.type }),
    h("td", { class: "mono", text: src(r) }),
    h("td", { class: "mono", text: dst(r) }),
    h("td", { text: account(r) }),
    h("td", {}, detail(r), connectionLinks && r.uid
      ? [" ", h("a", { href: `#/connection/${encodeURIComponent(r.uid)}?agent=${encodeURIComponent(r._agent ?? "")}`,
        text: t("tb.connection") })] : null),
    h("td", { text: r._agent ?? "" })));
  return h("table", {}, h("thead", {}, head), h("tbody", {}, rows));
}

function errorText(e) {
  if (e instanceof ApiError && e.status === 0) return t("err.network");
  if (e instanceof ApiError && e.status === 403) return t("err.forbidden");
  return e.message || String(e);
}

export function renderLogin(main, onLoggedIn) {
  const name = h("input", { id: "login-name", name: "username", autocomplete: "username", required: true });
  const password = h("input", { id: "login-password", name: "password", type: "password",
    autocomplete: "current-password", required: true });
  const msg = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "login", onsubmit: async (ev) => {
    ev.preventDefault();
    msg.textContent = "";
    try {
      const me = await api("/api/v1/session", { method: "POST", body: { name: name.value, password: password.value } });
      onLoggedIn(me);
    } catch (e) {
      msg.textContent = e instanceof ApiError && e.status === 401 ? t("login.failed") : errorText(e);
      password.value = "";
      password.focus();
    }
  } },
  field(t("login.name"), name), field(t("login.password"), password),
  h("button", { type: "submit", class: "primary", text: t("login.submit") }), msg);
  main.replaceChildren(h("h1", { text: t("login.title") }), form);
  name.focus();
}

// a value's label from i18n (`prefix + value`), or the value itself when the UI has none
function labelOf(prefix, v) {
  if (v === null || v === undefined || v === "") return "";
  const text = t(`${prefix}${v}`);
  return text === `${prefix}${v}` ? String(v) : text;
}

// The registration behind the traceback's account (the captive portal's guest): who, how,
// where, until when; ID and phone numbers as the server sent them (masked unless an admin asked).
function registrationCard(reg, at) {
  const expired = reg.valid_until !== null && reg.valid_until !== undefined && reg.valid_until < at;
  const facts = [
    ["tb.name", reg.name, "tb-name"], ["tb.method", labelOf("tb.m.", reg.method)], ["tb.room", reg.room],
    ["tb.id", [labelOf("tb.id.", reg.id_type), reg.id_number].filter(Boolean).join(" "), "tb-id"],
    ["tb.phone", reg.phone, "tb-phone"], ["tb.regtime", fmtTime(reg.ts)],
    ["tb.until", reg.valid_until ? fmtTime(reg.valid_until) + (expired ? t("tb.expired") : "") : ""],
    ["tb.desk", reg.desk_user]];
  return h("div", { class: "card", id: "tb-registration" }, h("h2", { text: t("tb.reg") }),
    h("dl", { class: "facts" }, ...facts.filter(([, v]) => v !== null && v !== undefined && v !== "")
      .flatMap(([k, v, id]) => [h("dt", { text: t(k) }), h("dd", { id, class: id === "tb-name" ? "" : "mono", text: v })])));
}

export function renderTraceback(main, params, me) {
  const ip = h("input", { id: "tb-ip", name: "ip", required: true, value: params.get("ip") || "", inputmode: "decimal" });
  const port = h("input", { id: "tb-port", name: "port", type: "number", min: 0, max: 65535, required: true,
    value: params.get("port") || "" });
  const time = h("input", { id: "tb-time", name: "ts", type: "datetime-local", step: 1, required: true,
    value: params.get("ts") ? toInputTime(params.get("ts")) : "" });
  const proto = h("select", { id: "tb-proto", name: "proto" },
    h("option", { value: "", text: t("tb.any") }), ...["tcp", "udp"].map((p) => h("option", { value: p, text: p })));
  proto.value = params.get("proto") || "";
  const out = h("section", { "aria-live": "polite", id: "tb-result" });
  const form = h("form", { class: "query", onsubmit: (ev) => {
    ev.preventDefault();
    location.hash = `#/traceback?${query({ ip: ip.value.trim(), port: port.value, ts: fromInputTime(time.value), proto: proto.value })}`;
  } }, field(t("tb.ip"), ip), field(t("tb.port"), port), field(t("tb.time"), time), field(t("tb.proto"), proto),
  h("button", { type: "submit", class: "primary", text: t("tb.submit") }));
  // an admin may see the registration's ID and phone numbers unmasked (the server audits it)
  const personal = params.get("personal") === "1" && me?.role === "admin";
  const asked = { ip: params.get("ip"), port: params.get("port"), ts: params.get("ts"), proto: params.get("proto") };
  const toggle = me?.role === "admin" && asked.ip ? h("p", {}, h("a", { id: "tb-personal",
    href: `#/traceback?${query({ ...asked, personal: personal ? undefined : 1 })}`, text: t(personal ? "u.hide" : "u.show") }))
    : null;
  main.replaceChildren(h("h1", { text: t("tb.title") }), form, ...(toggle ? [toggle] : []), out);
  if (!(params.get("ip") && params.get("port") && params.get("ts"))) { ip.focus(); return; }
  out.replaceChildren(h("p", { class: "muted", text: t("loading") }));
  api(`/api/v1/query/traceback?${query({ ...asked, personal: personal ? 1 : undefined })}`).then((ans) => {
    if (!ans.inside) { out.replaceChildren(h("p", { text: t("tb.none") })); return; }
    const id = ans.identity;
    const person = h("div", { class: "card", id: "tb-person" }, h("h2", { text: t("tb.person") }),
      h("dl", { class: "facts" },
        h("dt", { text: t("tb.inside") }), h("dd", { class: "mono", text: endpoint(ans.inside.ip, ans.inside.port) }),
        h("dt", { text: t("tb.via") }), h("dd", { text: ans.inside.via }),
        ...(id ? [
          h("dt", { text: t("tb.account") }), h("dd", { id: "tb-account", text: id.account ?? "" }),
          ...(ans.registration?.name ? [h("dt", { text: t("tb.name") }), h("dd", { text: ans.registration.name })] : []),
          h("dt", { text: t("tb.mac") }), h("dd", { class: "mono", text: id.mac ?? "" }),
          h("dt", { text: t("tb.calling") }), h("dd", { text: id.calling_station ?? "" }),
          h("dt", { text: t("tb.source") }), h("dd", { text: `${id.source ?? ""} ${fmtTime(id.ts)}` }),
        ] : [h("dt", { text: t("tb.account") }), h("dd", { text: t("tb.noid") })])));
    const nat = ans.nat.length ? h("div", { class: "card" }, h("h2", { text: t("tb.nat") }), recordsTable(ans.nat)) : null;
    const reg = ans.registration ? registrationCard(ans.registration, ans.query.ts) : null;
    out.replaceChildren(person, ...(reg ? [reg] : []), ...(nat ? [nat] : []),
      h("h2", { text: t("tb.records", { n: ans.records.length }) }),
      recordsTable(ans.records));
  }).catch((e) => out.replaceChildren(h("p", { class: "error", role: "alert", text: errorText(e) })));
}

export function renderSearch(main, params) {
  const type = h("select", { id: "s-type", name: "type" }, h("option", { value: "", text: t("s.all") }),
    ...listedTypes().map((x) => h("option", { value: x, text: x })));
  type.value = params.get("type") || "";
  const from = h("input", { id: "s-from", type: "datetime-local", step: 1, value: params.get("from") ? toInputTime(params.get("from")) : "" });
  const to = h("input", { id: "s-to", type: "datetime-local", step: 1, value: params.get("to") ? toInputTime(params.get("to")) : "" });
  const ip = h("input", { id: "s-ip", value: params.get("ip") || "" });
  const account = h("input", { id: "s-account", value: params.get("account") || "" });
  const text = h("input", { id: "s-q", type: "search", value: params.get("q") || "" });
  const out = h("section", { "aria-live": "polite", id: "s-result" });
  const current = () => ({ type: type.value, from: fromInputTime(from.value), to: fromInputTime(to.value),
    ip: ip.value.trim(), account: account.value.trim(), q: text.value.trim() });
  const form = h("form", { class: "query", onsubmit: (ev) => {
    ev.preventDefault();
    location.hash = `#/search?${query({ ...current(), run: 1 })}`;
  } }, field(t("s.type"), type), field(t("s.from"), from), field(t("s.to"), to), field(t("s.ip"), ip),
  field(t("s.account"), account), field(t("s.text"), text),
  h("button", { type: "submit", class: "primary", text: t("s.submit") }));
  main.replaceChildren(h("h1", { text: t("s.title") }), form, out);
  if (!params.get("run")) { type.focus(); return; }
  const asked = { type: params.get("type"), from: params.get("from"), to: params.get("to"), ip: params.get("ip"),
    account: params.get("account"), q: params.get("q"), limit: 100, cursor: params.get("cursor") };
  out.replaceChildren(h("p", { class: "muted", text: t("loading") }));
  api(`/api/v1/query/records?${query(asked)}`).then((page) => {
    const base = { ...asked, run: 1, limit: undefined };
    const pager = h("div", { class: "pager" },
      h("span", { id: "s-count", text: t("s.count", { n: page.records.length }) }),
      params.get("cursor") ? h("a", { href: `#/search?${query({ ...base, cursor: undefined })}`, text: t("s.first") }) : null,
      page.cursor ? h("a", { href: `#/search?${query({ ...base, cursor: page.cursor })}`, text: t("s.next") }) : null,
      h("a", { id: "s-csv", href: `/api/v1/query/records?${query({ ...asked, format: "csv" })}`, download: "records.csv",
        text: t("s.csv") }));
    out.replaceChildren(pager, page.records.length ? recordsTable(page.records) : h("p", { text: t("s.none") }));
  }).catch((e) => out.replaceChildren(h("p", { class: "error", role: "alert", text: errorText(e) })));
}

export function renderConnection(main, uid, params) {
  const out = h("section", { "aria-live": "polite" }, h("p", { class: "muted", text: t("loading") }));
  main.replaceChildren(h("h1", { text: t("c.title", { uid }) }), out);
  api(`/api/v1/query/connection?${query({ uid, agent: params.get("agent") })}`)
    .then((ans) => out.replaceChildren(recordsTable(ans.records, { connectionLinks: false })))
    .catch((e) => out.replaceChildren(h("p", { class: "error", role: "alert", text: errorText(e) })));
}
