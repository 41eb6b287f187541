// The collector's JSON API, as the logged-in user (the session cookie; the header marks the
// request as the UI's own: the server requires it on state changes and sends no Basic challenge).
export class ApiError extends Error {
  constructor(status, reason, detail) { super(detail || reason); this.status = status; this.reason = reason; }
}

export async function api(path, { method = "GET", body, raw, type = "application/octet-stream" } = {}) {
  let resp;
  try {
    resp = await fetch(path, {
      method, credentials: "same-origin",
      headers: { "X-Edgeaudit-UI": "1", ...(body ? { "Content-Type": "application/json" } : {}),
        ...(raw ? { "Content-Type": type } : {}) },
      body: raw ?? (body ? JSON.stringify(body) : undefined),
    });
  } catch (e) {
    throw new ApiError(0, "network", String(e));
  }
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new ApiError(resp.status, data.error || "error", data.detail || resp.statusText);
  return data;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  return q.toString();
}
