// Shared helpers of the desk and the wallboard: bilingual labels, the JSON API with the
// session cookie, server-sent events that reconnect, and times on the server's clock.

/** The page's configuration (labels, names) from its <script type="application/json">. */
export function readConfig(id) {
  const el = document.getElementById(id);
  return el ? JSON.parse(el.textContent) : {};
}

let LABELS = {};
export function setLabels(labels) { LABELS = labels || {}; }

/** [Swedish, English] for a key of a label group (the key itself when unknown). */
export function pair(group, key) {
  const found = (LABELS[group] || {})[key];
  return found || [String(key), String(key)];
}

function fill(text, values) {
  return text.replace(/\{(\w+)\}/g, (_, k) => (k in values ? String(values[k]) : `{${k}}`));
}

/** Put a bilingual label into an element: Swedish, then the English in a smaller span. */
export function setLabel(el, group, key, values = {}) {
  const [sv, en] = pair(group, key);
  setBilingual(el, fill(sv, values), fill(en, values));
}

export function setBilingual(el, sv, en) {
  el.textContent = sv;
  if (en && en !== sv) {
    el.append(" ");
    const span = document.createElement("span");
    span.className = "en";
    span.lang = "en";
    span.textContent = en;
    el.append(span);
  }
}

export function plain(group, key, values = {}) {
  const [sv, en] = pair(group, key);
  return sv === en ? fill(sv, values) : `${fill(sv, values)} / ${fill(en, values)}`;
}

/** Call the JSON API; resolves to the body, or throws an Error with the API's message
 * (and the whole answer as ``err.body``, e.g. per-field errors). A Blob body is sent as CSV. */
export async function api(path, { method = "GET", body } = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body instanceof Blob) {
    init.headers["Content-Type"] = "text/csv";
    init.body = body;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (resp.status === 401) {
    goToLogin();
    throw new Error("Inloggningen har gått ut / Your session has expired");
  }
  let data = null;
  try { data = await resp.json(); } catch { data = null; }
  if (!resp.ok) {
    const err = new Error((data && data.error) || `HTTP ${resp.status}`);
    err.body = data;
    throw err;
  }
  return data;
}

export function goToLogin() {
  const next = encodeURIComponent(location.pathname + location.search);
  location.assign(`/login?next=${next}`);
}

/**
 * Follow a server-sent event stream. `onState(data)` gets each `event: state`;
 * `onStatus(ok)` hears when the connection is lost and back. The browser reconnects by
 * itself; when the server refuses us (the session expired) we go to the login page.
 */
export function follow(url, onState, onStatus = () => {}) {
  let source = null;
  let retry = 1000;
  const open = () => {
    source = new EventSource(url, { withCredentials: true });
    source.addEventListener("state", (ev) => {
      retry = 1000;
      onStatus(true);
      onState(JSON.parse(ev.data));
    });
    source.onerror = async () => {
      onStatus(false);
      if (source.readyState === EventSource.CLOSED) {
        // refused (401, 403, 503): find out why before trying again
        try {
          const resp = await fetch("/api/session", { credentials: "same-origin" });
          if (resp.status === 401) { goToLogin(); return; }
        } catch { /* the server is away: try again later */ }
        setTimeout(open, retry);
        retry = Math.min(retry * 2, 30000);
      }
    };
  };
  open();
  return () => source && source.close();
}

/** The server's clock, as far as the last message from it told us. */
export const serverClock = {
  skew: 0,
  sync(iso) { if (iso) this.skew = Date.parse(iso) - Date.now(); },
  now() { return Date.now() + this.skew; },
};

/** Seconds as "m:ss" (or "h:mm:ss"). */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** A time of day in Swedish local time, e.g. "09:31". */
export function clockTime(iso, withSeconds = false) {
  if (!iso) return "";
  const options = { hour: "2-digit", minute: "2-digit", timeZone: "Europe/Stockholm" };
  if (withSeconds) options.second = "2-digit";
  return new Date(iso).toLocaleTimeString("sv-SE", options);
}

export function percent(share) {
  return share === null || share === undefined ? "–" : `${(share * 100).toFixed(0)} %`;
}

/** Show an error message in a role="alert" element; hide it again when empty. */
export function showError(el, message) {
  el.textContent = message || "";
  el.hidden = !message;
}

export function queueName(queues, name) {
  const display = (queues[name] && (queues[name].display || queues[name])) || {};
  return [display.sv || name, display.en || ""];
}
