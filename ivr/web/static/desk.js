// The agent desk: the agent's state, the offered call, the call, the wrap-up with its
// countdown and the callbacks, live from /api/agent/stream (server-sent events). The
// switchboard tools (directory, transfer, messages) are in tools.js.
import {
  api, clockTime, duration, follow, plain, queueName, readConfig, serverClock, setBilingual,
  setLabel, setLabels, showError,
} from "./common.js";
import { initTools } from "./tools.js";

const config = readConfig("desk-config");
setLabels(config.labels);
const suffix = config.acting_for ? `?agent=${encodeURIComponent(config.agent)}` : "";
const $ = (id) => document.getElementById(id);
const els = {
  state: $("agent-state"), reason: $("agent-reason"), since: $("agent-since"),
  login: $("desk-login"), logout: $("desk-logout"), pauseForm: $("pause-form"),
  pauseReason: $("pause-reason"), resume: $("resume"), offer: $("offer"), accept: $("accept"),
  decline: $("decline"), current: $("current-call"), hangup: $("hangup"),
  callbackForm: $("callback-form"), callbackResult: $("callback-result"), wrapup: $("wrapup"),
  wrapupForm: $("wrapup-form"), resolution: $("wrapup-resolution"), code: $("wrapup-code"),
  note: $("wrapup-note"), countdown: $("wrapup-countdown"), callbacks: $("callbacks"),
  status: $("desk-status"), error: $("desk-error"), connection: $("desk-connection"),
};

const refresh = async () => render(await api(`/api/agent/state${suffix}`));
const tools = initTools(config, { suffix, say, refresh });
let current = null; // the last state from the server
let wrapupCall = null; // the call whose wrap-up form is filled in
let warned = false; // "10 s left" said for this wrap-up

function say(message) { els.status.textContent = message; }

function show(el, visible) {
  if (visible === !el.hidden) return;
  const hadFocus = el.contains(document.activeElement);
  el.hidden = !visible;
  if (!visible && hadFocus) $("status-title").focus();
}

function fillCall(section, call) {
  const field = (name) => section.querySelector(`[data-field="${name}"]`);
  const [sv, en] = queueName(config.queues, call.queue);
  setBilingual(field("queue"), sv, en);
  field("category").textContent = call.category || "–";
  field("case").textContent = call.case_number || "–";
  const repeat = field("repeat");
  repeat.classList.toggle("repeat-yes", call.repeat_caller === true);
  if (call.repeat_caller === true) {
    setLabel(repeat, "text", "repeat", { n: call.repeat_contacts, d: call.repeat_window_days });
  } else if (call.repeat_caller === false) {
    setLabel(repeat, "text", "first", { d: call.repeat_window_days });
  } else {
    setLabel(repeat, "text", "unknown");
  }
  field("wait").textContent = duration(call.wait_s);
  const isCallback = call.kind === "callback";
  section.querySelector('[data-when="callback"]').hidden = !isCallback;
  field("number").textContent = isCallback ? call.callback_number || "" : "";
  const path = field("path");
  path.replaceChildren(...(call.path || []).map((node) => {
    const li = document.createElement("li");
    li.dataset.node = node;
    li.textContent = node;
    return li;
  }));
  const kind = section.querySelector('[data-field="kind"]');
  if (kind) setLabel(kind, "text", isCallback ? "callback" : "incoming");
}

function fillWrapup(call) {
  if (wrapupCall === call.call_id) return; // keep what the agent has chosen
  wrapupCall = call.call_id;
  warned = false;
  const codes = call.categories && call.categories.length ? call.categories : [];
  const options = codes.map((code) => new Option(code, code));
  if (!codes.length) options.push(new Option(plain("text", "none"), ""));
  els.code.replaceChildren(...options);
  els.code.required = codes.length > 0;
  if (call.category && codes.includes(call.category)) els.code.value = call.category;
  els.resolution.value = "resolved";
  els.note.value = "";
}

function renderCallbacks(callbacks) {
  if (!callbacks.length) {
    const li = document.createElement("li");
    li.className = "empty";
    setLabel(li, "text", "no_callbacks");
    els.callbacks.replaceChildren(li);
    return;
  }
  els.callbacks.replaceChildren(...callbacks.map((c) => {
    const li = document.createElement("li");
    li.dataset.call = c.call_id;
    const [sv, en] = queueName(config.queues, c.queue);
    const queue = document.createElement("strong");
    setBilingual(queue, sv, en);
    const stage = document.createElement("span");
    setLabel(stage, "stage", c.stage);
    const wait = document.createElement("span");
    wait.textContent = duration(c.wait_s);
    const tries = document.createElement("span");
    tries.textContent = c.attempts ? `${c.attempts} ${plain("text", "attempts")}` : "";
    li.append(queue, " – ", stage, " ", wait, " ", tries);
    return li;
  }));
}

function render(state) {
  const previous = current;
  current = state;
  serverClock.sync(state.at);
  setLabel(els.state, "state", state.state);
  els.state.dataset.state = state.state;
  if (state.state === "paused" && state.reason) setLabel(els.reason, "reason", state.reason);
  else els.reason.textContent = "";
  els.since.textContent = clockTime(state.since);
  if (state.since) els.since.dateTime = state.since;

  const s = state.state;
  const call = state.call;
  if (previous && previous.state !== s) say("");
  els.login.hidden = s !== "offline";
  els.logout.hidden = s === "offline";
  els.logout.disabled = s === "talking";
  els.pauseForm.hidden = !["available", "offered", "talking", "wrapup"].includes(s);
  els.resume.hidden = s !== "paused";

  show(els.offer, s === "offered" && !!call);
  if (s === "offered" && call) {
    fillCall(els.offer, call);
    if (!previous || previous.state !== "offered") {
      const [sv, en] = queueName(config.queues, call.queue);
      say(`${plain("text", call.kind === "callback" ? "callback" : "incoming")}: ${sv}${en ? ` / ${en}` : ""}`);
      if (document.activeElement === document.body || !document.activeElement) els.accept.focus();
    }
  }
  show(els.current, s === "talking" && !!call);
  if (s === "talking" && call) {
    fillCall(els.current, call);
    els.callbackForm.hidden = !state.dialling;
    els.hangup.hidden = !!state.dialling;
    if (!previous || previous.state !== "talking") (state.dialling ? els.callbackResult : els.hangup).focus();
  }
  show(els.wrapup, s === "wrapup" && !!call);
  if (s === "wrapup" && call) {
    const fresh = wrapupCall !== call.call_id;
    fillWrapup(call);
    if (fresh) els.resolution.focus();
  } else {
    wrapupCall = null;
  }
  tick();
  renderCallbacks(state.callbacks || []);
  tools.update(state);
}

function tick() {
  if (!current || current.state !== "wrapup" || !current.deadline) {
    els.countdown.textContent = "0";
    els.countdown.dataset.low = "false";
    return;
  }
  const left = Math.max(0, Math.ceil((Date.parse(current.deadline) - serverClock.now()) / 1000));
  els.countdown.textContent = String(left);
  els.countdown.dataset.low = String(left <= 10);
  if (left <= 10 && left > 0 && !warned) {
    warned = true;
    say(plain("text", "wrapup_left", { s: left }));
  }
}

async function act(action, body) {
  showError(els.error, "");
  try {
    await api(`/api/agent/${action}${suffix}`, { method: "POST", body: body || {} });
    render(await api(`/api/agent/state${suffix}`));
  } catch (err) {
    showError(els.error, err.message);
  }
}

els.login.addEventListener("click", () => act("login"));
els.logout.addEventListener("click", () => act("logout"));
els.pauseForm.addEventListener("submit", (ev) => { ev.preventDefault(); act("pause", { reason: els.pauseReason.value }); });
els.resume.addEventListener("click", () => act("resume"));
els.accept.addEventListener("click", () => act("accept"));
els.decline.addEventListener("click", () => act("decline"));
els.hangup.addEventListener("click", () => act("hangup"));
els.callbackForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  act("callback-result", { result: els.callbackResult.value });
});
els.wrapupForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const body = { resolution: els.resolution.value, category: els.code.value || null };
  const note = els.note.value.trim();
  if (note) body.note = note;
  act("wrapup", body).then(() => { if (current && current.state !== "wrapup") say(plain("text", "saved")); });
});

setInterval(tick, 250);
follow(`/api/agent/stream${suffix}`, render, (ok) => {
  if (ok) els.connection.textContent = "";
  else setLabel(els.connection, "text", "reconnecting");
});
