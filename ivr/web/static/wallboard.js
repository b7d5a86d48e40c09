// The supervisor wallboard: queues, agents and announcements live from
// /api/queues/stream (server-sent events); the day's figures, FCR, recent calls and the
// charts from /api/wallboard, fetched again after each change (debounced) and every 15 s.
import { barChart } from "./charts.js";
import {
  api, clockTime, duration, follow, pair, percent, plain, queueName, readConfig, serverClock,
  setBilingual, setLabel, setLabels, showError,
} from "./common.js";

const config = readConfig("wallboard-config");
setLabels(config.labels);
const $ = (id) => document.getElementById(id);
const errorBox = $("wallboard-error");
const FIGURES_EVERY_MS = 15000;
const DEBOUNCE_MS = 800;

let live = null; // the last state from the stream
let figuresTimer = null;
let figuresBusy = false;
let figuresAgain = false;

function cell(row, field) { return row.querySelector(`[data-field="${field}"]`); }

// ------------------------------------------------------------------ live state

function renderLive(state) {
  live = state;
  serverClock.sync(state.at);
  for (const [name, q] of Object.entries(state.queues)) {
    const row = document.querySelector(`tr[data-queue="${CSS.escape(name)}"]`);
    if (!row) continue;
    const waiting = cell(row, "waiting");
    waiting.textContent = String(q.waiting);
    waiting.dataset.busy = String(q.waiting > 0);
  }
  const counts = {};
  for (const a of state.agents) {
    counts[a.state] = (counts[a.state] || 0) + 1;
    const row = document.querySelector(`tr[data-agent="${CSS.escape(a.agent)}"]`);
    if (!row) continue;
    const stateCell = cell(row, "state");
    if (stateCell.dataset.state !== a.state || stateCell.dataset.reason !== (a.reason || "")) {
      setLabel(stateCell, "state", a.state);
      if (a.state === "paused" && a.reason) stateCell.append(` (${plain("reason", a.reason)})`);
      stateCell.dataset.state = a.state;
      stateCell.dataset.reason = a.reason || "";
    }
    row.dataset.since = a.since || "";
  }
  $("agent-counts").textContent = ["available", "offered", "talking", "wrapup", "paused", "offline"]
    .filter((s) => counts[s]).map((s) => `${plain("state", s)}: ${counts[s]}`).join(" · ");
  for (const slot of state.announcements) renderSlot(slot);
  const updated = $("last-update");
  updated.textContent = clockTime(state.at, true);
  updated.dateTime = state.at;
  tick();
  scheduleFigures(DEBOUNCE_MS);
}

function renderSlot(slot) {
  const box = document.querySelector(`[data-slot-box="${CSS.escape(slot.slot)}"]`);
  if (!box) return;
  const button = box.querySelector("button[data-slot]");
  button.setAttribute("aria-pressed", String(slot.enabled));
  if (slot.enabled) setBilingual(button, "Stäng av", "Switch off");
  else setBilingual(button, "Slå på", "Switch on");
  setLabel(cell(box, "slot-state"), "text", slot.active ? "on" : "off");
  cell(box, "until").textContent = slot.until && slot.enabled
    ? `${plain("text", "until")} ${new Date(slot.until).toLocaleString("sv-SE", { timeZone: "Europe/Stockholm" })}`
    : "";
}

function tick() {
  if (!live) return;
  const elapsed = (serverClock.now() - Date.parse(live.at)) / 1000;
  for (const [name, q] of Object.entries(live.queues)) {
    const row = document.querySelector(`tr[data-queue="${CSS.escape(name)}"]`);
    if (row) cell(row, "longest-wait").textContent = q.waiting ? duration(q.longest_wait_s + elapsed) : "–";
  }
  for (const row of document.querySelectorAll("tr[data-agent]")) {
    const since = row.dataset.since;
    cell(row, "since").textContent = since ? duration((serverClock.now() - Date.parse(since)) / 1000) : "–";
  }
}

// ------------------------------------------------------------------ the day's figures

function scheduleFigures(delay) {
  clearTimeout(figuresTimer);
  figuresTimer = setTimeout(loadFigures, delay);
}

async function loadFigures() {
  if (figuresBusy) { figuresAgain = true; return; }
  figuresBusy = true;
  try {
    renderFigures(await api("/api/wallboard"));
    showError(errorBox, "");
  } catch (err) {
    showError(errorBox, err.message);
  } finally {
    figuresBusy = false;
    if (figuresAgain) { figuresAgain = false; scheduleFigures(DEBOUNCE_MS); }
    else scheduleFigures(FIGURES_EVERY_MS);
  }
}

function renderFigures(f) {
  const goal = f.service_level_goal;
  for (const [name, q] of Object.entries(f.queues)) {
    const row = document.querySelector(`tr[data-queue="${CSS.escape(name)}"]`);
    if (!row) continue;
    const sl = cell(row, "service-level");
    sl.textContent = percent(q.service_level);
    sl.dataset.below = String(q.service_level !== null && q.service_level < goal);
    cell(row, "answered").textContent = String(q.answered);
    cell(row, "abandoned").textContent = String(q.abandoned);
  }
  for (const row of document.querySelectorAll("#fcr tr[data-measure]")) {
    const m = row.dataset.measure;
    row.querySelector('[data-period="today"]').textContent = percent(f.fcr.today[m]);
    row.querySelector('[data-period="week"]').textContent = percent(f.fcr.week[m]);
  }
  renderRecent(f.recent);
  renderCharts(f);
}

function renderRecent(recent) {
  const list = $("recent");
  if (!recent.length) {
    const li = document.createElement("li");
    li.className = "empty";
    setLabel(li, "text", "no_calls");
    list.replaceChildren(li);
    return;
  }
  list.replaceChildren(...recent.map((r) => {
    const li = document.createElement("li");
    li.dataset.call = r.call_id;
    const at = document.createElement("time");
    at.dateTime = r.at;
    at.textContent = clockTime(r.at);
    const queue = document.createElement("span");
    queue.dataset.field = "queue";
    const [sv, en] = r.queue_display ? [r.queue_display.sv || r.queue, r.queue_display.en] : queueName(config.queues, r.queue || "–");
    setBilingual(queue, sv, en);
    const agent = document.createElement("span");
    agent.dataset.field = "agent";
    agent.textContent = r.agent_name || r.agent || "–";
    const resolution = document.createElement("strong");
    resolution.dataset.field = "resolution";
    setLabel(resolution, "resolution", r.resolution || "uncoded");
    const code = document.createElement("span");
    code.dataset.field = "code";
    code.textContent = r.category || "";
    li.append(at, queue, agent, resolution, code);
    return li;
  }));
}

function renderCharts(f) {
  const hours = f.hours;
  const used = hours.filter((h) => h.calls > 0).map((h) => h.hour);
  const first = Math.min(7, ...used);
  const last = Math.max(17, ...used);
  const shown = hours.filter((h) => h.hour >= first && h.hour <= last);
  const label = (h) => String(h.hour).padStart(2, "0");
  const [callsSv, callsEn] = pair("text", "calls_per_hour");
  barChart($("chart-calls"), shown.map((h) => ({ label: label(h), value: h.calls, text: h.calls ? String(h.calls) : "" })), {
    title: `${callsSv} / ${callsEn}`,
    summary: shown.filter((h) => h.calls).map((h) => `${label(h)}: ${h.calls}`).join(", "),
  });
  const [slSv, slEn] = pair("text", "sl_per_hour");
  barChart($("chart-sl"), shown.map((h) => ({ label: label(h), value: h.service_level,
    text: h.service_level === null ? "" : percent(h.service_level) })), {
    max: 1, goal: f.service_level_goal, tick: (v) => percent(v), below: (v) => v < f.service_level_goal,
    title: `${slSv} / ${slEn}`,
    summary: shown.filter((h) => h.service_level !== null).map((h) => `${label(h)}: ${percent(h.service_level)}`).join(", "),
  });
  const body = document.querySelector("#hours-table tbody");
  body.replaceChildren(...shown.map((h) => {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = `${label(h)}:00`;
    tr.append(th);
    for (const text of [String(h.calls), String(h.answered), percent(h.service_level)]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    return tr;
  }));
}

// ------------------------------------------------------------------ announcements

for (const button of document.querySelectorAll("button[data-slot]")) {
  button.addEventListener("click", async () => {
    const enabled = button.getAttribute("aria-pressed") !== "true";
    try {
      renderSlot(await api(`/api/announcements/${encodeURIComponent(button.dataset.slot)}`,
        { method: "POST", body: { enabled } }));
      showError(errorBox, "");
    } catch (err) {
      showError(errorBox, err.message);
    }
  });
}

for (const form of document.querySelectorAll("form[data-slot-form]")) {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const slot = form.dataset.slotForm;
    const text = {};
    for (const lang of config.languages) {
      const value = form.elements[`text-${lang}`].value.trim();
      if (value) text[lang] = value;
    }
    const until = form.elements.until.value || null;
    try {
      renderSlot(await api(`/api/announcements/${encodeURIComponent(slot)}`,
        { method: "POST", body: { enabled: true, text, until } }));
      showError(errorBox, "");
    } catch (err) {
      showError(errorBox, err.message);
    }
  });
}

setInterval(tick, 1000);
loadFigures();
follow("/api/queues/stream", renderLive, (ok) => {
  const box = $("wallboard-connection");
  if (ok) box.textContent = "";
  else setLabel(box, "text", "reconnecting");
});
