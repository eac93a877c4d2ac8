// The API with the signed-in key (sessionStorage), and the alert stream: Server-Sent
// Events read over fetch, because EventSource cannot send the Authorization header.

const KEY = "swc.key";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function getKey() {
  return sessionStorage.getItem(KEY);
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

let onUnauthorized = () => {};
export function whenUnauthorized(fn) {
  onUnauthorized = fn;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v == null || v === "") continue;
    for (const item of Array.isArray(v) ? v : [v]) q.append(k, String(item));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

async function errorOf(resp) {
  let message = `${resp.status} ${resp.statusText}`;
  try {
    const body = await resp.json();
    if (body && body.message) message = body.message;
  } catch (_) {
    /* not JSON */
  }
  return new ApiError(resp.status, message);
}

/** fetch with the key; JSON in and out; throws ApiError with the API's message. */
export async function api(path, { method = "GET", body, key = getKey(), raw = false, signal } = {}) {
  const headers = { Authorization: `Bearer ${key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  if (!resp.ok) {
    const err = await errorOf(resp);
    if (resp.status === 401 && key === getKey()) onUnauthorized();
    throw err;
  }
  return raw ? resp : resp.json();
}

/** Every page of GET /readings (items concatenated as rows; at most maxPages pages). */
export async function readings(params, maxPages = 10) {
  let page = await api(`/readings${query({ limit: 10000, ...params })}`);
  const rows = [...page.items];
  for (let i = 1; page.next && i < maxPages; i++) {
    page = await api(page.next);
    rows.push(...page.items);
  }
  return { ...page, rows };
}

/** Every item of a list (its first page given or fetched), following `next`. */
export async function listAll(path, first = null, maxPages = 50) {
  let page = first || (await api(path));
  const items = [...page.items];
  for (let i = 1; page.next && i < maxPages; i++) {
    page = await api(page.next);
    items.push(...page.items);
  }
  return items;
}

function parseBlock(block) {
  const ev = { id: null, event: "message", data: "" };
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
    if (field === "id") ev.id = value;
    else if (field === "event") ev.event = value;
    else if (field === "data") data.push(value);
  }
  ev.data = data.join("\n");
  return data.length || ev.id ? ev : null;
}

/**
 * Follow /alerts/stream until stop() is called. onEvent(payload) for each alert event;
 * onState("connecting" | "live" | "reconnecting"); onResync() after each (re)connection,
 * so that the caller reloads what it may have missed.
 */
export function alertStream({ onEvent, onState, onResync }) {
  let stopped = false;
  let controller = null;
  let lastId = null;

  async function once() {
    controller = new AbortController();
    const headers = { Authorization: `Bearer ${getKey()}` };
    if (lastId) headers["Last-Event-ID"] = lastId;
    const resp = await fetch("/alerts/stream", { headers, signal: controller.signal });
    if (resp.status === 401) {
      onUnauthorized();
      stopped = true;
      return;
    }
    if (!resp.ok) throw new Error(`stream: ${resp.status}`);
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    let first = true;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        if (first) {
          first = false;
          onState("live");
          onResync();
        }
        const ev = parseBlock(block);
        if (!ev) continue;
        if (ev.id) lastId = ev.id;
        if (ev.event === "overflow") {
          lastId = null;
          return; // too far behind: reconnect and reload
        }
        if (ev.event === "alert") {
          try {
            onEvent(JSON.parse(ev.data));
          } catch (err) {
            console.error("alert event", err);
          }
        }
      }
    }
  }

  (async () => {
    onState("connecting");
    while (!stopped) {
      try {
        await once();
      } catch (err) {
        if (stopped) break;
      }
      if (stopped) break;
      onState("reconnecting");
      await new Promise((r) => setTimeout(r, 2000));
    }
  })();

  return {
    stop() {
      stopped = true;
      if (controller) controller.abort();
    },
  };
}
