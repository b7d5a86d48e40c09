// The desk's switchboard tools (docs/web.md): the directory search, the transfer panel and
// messages to case officers. desk.js calls initTools() once and update(state) with every
// state of the agent from the server; everything else here talks to the JSON API itself.
import { api, pair, plain, serverClock, setBilingual, setLabel, showError } from "./common.js";

const SEARCH_DELAY_MS = 150; // debounce: search once the agent pauses typing
const SEARCH_LIMIT = 10;
const MESSAGES_EVERY_MS = 20000; // the open messages have no live stream: re-read them
const FIELDS = { // API field -> form control of the message form
  target: "msg-target", caller_name: "msg-caller-name", callback_number: "msg-callback-number",
  consent: "msg-consent", category: "msg-category", question: "msg-question",
  case_number: "msg-case-number", promised_by: "msg-promised-by",
};
const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function labelled(tag, className, group, key, values) {
  const node = el(tag, className);
  setLabel(node, group, key, values);
  return node;
}

/** A time in Swedish local time: "2 dec. 09:30", or only the date at midnight. */
export function localTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const parts = Object.fromEntries(new Intl.DateTimeFormat("sv-SE", {
    timeZone: "Europe/Stockholm", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  }).formatToParts(date).map((p) => [p.type, p.value]));
  const day = date.toLocaleDateString("sv-SE", { timeZone: "Europe/Stockholm", day: "numeric", month: "short",
    year: "numeric" });
  return parts.hour === "00" && parts.minute === "00" ? day : `${day} ${parts.hour}:${parts.minute}`;
}

/** A datetime-local value ("2026-12-02T09:30") in Swedish local time, `hours` after the server's now. */
export function localInput(ms) {
  const text = new Date(ms).toLocaleString("sv-SE", {
    timeZone: "Europe/Stockholm", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit",
    minute: "2-digit", hourCycle: "h23",
  });
  return text.replace(" ", "T");
}

export function initTools(config, { suffix = "", say = () => {}, refresh = async () => {} } = {}) {
  serverClock.sync(config.now);
  const selection = { entry: null }; // the directory hit the agent chose
  const dir = directory(selection, onChoose);
  const xfer = transferPanel(config, selection, { suffix, say, refresh });
  const msg = messages(config, selection, { say });

  function onChoose(entry) {
    xfer.chosen(entry);
    msg.chosen(entry);
  }

  return {
    update(state) {
      xfer.update(state);
      msg.update(state);
    },
    dir,
  };
}

// --------------------------------------------------------------------------- directory search

function directory(selection, onChoose) {
  const input = $("dir-search");
  const list = $("dir-results");
  const count = $("dir-count");
  const error = $("dir-error");
  const selected = $("dir-selected");
  let hits = [];
  let active = -1;
  let timer = null;
  let asked = 0; // only the answer to the latest query is shown

  function entryLine(entry) {
    const li = el("li", "dir-hit");
    li.id = `dir-opt-${list.childElementCount}`;
    li.dataset.entry = entry.id;
    li.setAttribute("role", "option");
    li.setAttribute("aria-selected", "false");
    const head = el("div", "dir-head");
    const kind = labelled("span", "dir-kind", "dir_kind", entry.kind);
    head.append(el("strong", "dir-name", entry.name), " ", kind);
    li.append(head);
    const where = [entry.title, entry.kind === "person" ? entry.unit : null].filter(Boolean).join(", ");
    if (where) li.append(el("div", "dir-where", where));
    li.append(statusLine(entry));
    const reach = el("div", "dir-reach");
    if (entry.phone) reach.append(el("span", "dir-phone", entry.phone));
    if (entry.extension) {
      const [sv, en] = pair("text", "ext");
      const ext = el("span", "dir-ext", `${sv}/${en} ${entry.extension}`);
      reach.append(reach.childElementCount ? " · " : "", ext);
    }
    if (entry.languages && entry.languages.length) {
      const [sv, en] = pair("text", "languages");
      reach.append(reach.childElementCount ? " · " : "",
        el("span", "dir-langs", `${sv}/${en}: ${entry.languages.join(", ")}`));
    }
    if (reach.childElementCount) li.append(reach);
    li.addEventListener("mousedown", (ev) => ev.preventDefault()); // keep the focus in the search box
    li.addEventListener("click", () => choose(hits.indexOf(entry)));
    return li;
  }

  function statusLine(entry, tag = "div") {
    const status = entry.status_now || entry.status || "available";
    const line = el(tag, "dir-status");
    line.dataset.status = status;
    const name = el("span");
    setLabel(name, "dir_status", status);
    line.append(name);
    if (status !== "available") {
      if (entry.status_note) line.append(": ", el("span", "dir-note", entry.status_note));
      if (entry.status_until) {
        line.append(" (", labelled("span", "", "text", "until"), " ");
        const until = el("time", "", localTime(entry.status_until));
        until.dateTime = entry.status_until;
        line.append(until, ")");
      }
    }
    return line;
  }

  function setActive(index) {
    const items = list.querySelectorAll('[role="option"]');
    active = items.length ? (index + items.length) % items.length : -1;
    items.forEach((item, i) => item.setAttribute("aria-selected", String(i === active)));
    if (active >= 0) {
      input.setAttribute("aria-activedescendant", items[active].id);
      items[active].scrollIntoView({ block: "nearest" });
    } else {
      input.removeAttribute("aria-activedescendant");
    }
  }

  function show(results, query) {
    hits = results;
    list.replaceChildren();
    results.forEach((entry) => list.append(entryLine(entry)));
    input.setAttribute("aria-expanded", String(results.length > 0));
    setActive(results.length ? 0 : -1);
    if (!query) count.textContent = "";
    else if (results.length) setLabel(count, "text", "hits", { n: results.length });
    else setLabel(count, "text", "no_hits");
  }

  async function search() {
    const query = input.value.trim();
    const ticket = ++asked;
    if (!query) { show([], ""); return; }
    try {
      const data = await api(`/api/directory?q=${encodeURIComponent(query)}&limit=${SEARCH_LIMIT}`);
      if (ticket !== asked) return;
      showError(error, "");
      show(data.results || [], query);
    } catch (err) {
      if (ticket === asked) showError(error, err.message);
    }
  }

  function choose(index) {
    const entry = hits[index];
    if (!entry) return;
    setActive(index);
    selection.entry = entry;
    selected.textContent = "";
    selected.append(el("strong", "", entry.name));
    if (entry.kind === "person" && entry.unit) selected.append(`, ${entry.unit}`);
    selected.append(" – ", statusLine(entry, "span"));
    selected.dataset.entry = entry.id;
    onChoose(entry);
  }

  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(search, SEARCH_DELAY_MS);
  });
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      if (!hits.length) return;
      ev.preventDefault();
      setActive(active + (ev.key === "ArrowDown" ? 1 : -1));
    } else if (ev.key === "Enter") {
      ev.preventDefault(); // a search box, not a form: Enter chooses the highlighted hit
      if (active >= 0) choose(active);
    } else if (ev.key === "Escape") {
      input.value = "";
      show([], "");
    }
  });
  return { search, choose };
}

// --------------------------------------------------------------------------- transfers

function transferPanel(config, selection, { suffix, say, refresh }) {
  const els = {
    toDirectory: $("xfer-to-directory"), toQueue: $("xfer-to-queue"), toNumber: $("xfer-to-number"),
    directoryName: $("xfer-directory-name"), queue: $("xfer-queue"), number: $("xfer-number"),
    blind: $("xfer-blind"), attended: $("xfer-attended"), hint: $("xfer-hint"), state: $("xfer-state"),
    consult: $("xfer-consult"), complete: $("xfer-complete"), cancel: $("xfer-cancel"),
    error: $("xfer-error"),
  };
  let talking = false;
  let transfer = null; // the server's "transfer" of /api/agent/state

  function target() {
    if (els.toDirectory.checked) return selection.entry ? { directory: selection.entry.id } : null;
    if (els.toNumber.checked) return els.number.value.trim() ? { number: els.number.value.trim() } : null;
    return { queue: els.queue.value };
  }

  function refreshButtons() {
    const busy = transfer !== null && transfer.active !== false; // an ended one is shown, not under way
    const ready = talking && !busy && target() !== null;
    els.blind.disabled = !ready;
    els.attended.disabled = !ready || els.toQueue.checked; // an attended transfer to a queue is refused
    els.hint.hidden = talking;
    els.consult.hidden = !(busy && transfer.kind === "attended");
    els.complete.disabled = !(busy && transfer.state === "consulting");
  }

  function showState() {
    els.state.dataset.state = transfer ? transfer.state : "none";
    if (!transfer) { setLabel(els.state, "text", "no_transfer"); return; }
    const [kindSv, kindEn] = pair("xfer_kind", transfer.kind);
    const [stateSv, stateEn] = pair("xfer_state", transfer.state);
    const who = transfer.target_label || "";
    const [whySv, whyEn] = transfer.reason
      ? pair("xfer_reason", transfer.reason).map((w) => ` (${w})`) : ["", ""];
    setBilingual(els.state, `${kindSv} till ${who}: ${stateSv}${whySv}`,
      `${kindEn} to ${who}: ${stateEn}${whyEn}`);
  }

  async function post(path, body) {
    showError(els.error, "");
    try {
      await api(`/api/agent/${path}${suffix}`, { method: "POST", body: body || {} });
      await refresh();
    } catch (err) {
      showError(els.error, err.message);
    }
  }

  async function start(kind) {
    const to = target();
    if (!to) return;
    await post("transfer", { kind, target: to });
    if (transfer && kind === "attended") (els.complete.disabled ? els.cancel : els.complete).focus();
  }

  els.blind.addEventListener("click", () => start("blind"));
  els.attended.addEventListener("click", () => start("attended"));
  els.complete.addEventListener("click", () => post("transfer/complete"));
  els.cancel.addEventListener("click", () => post("transfer/cancel"));
  els.queue.addEventListener("change", () => { els.toQueue.checked = true; refreshButtons(); });
  els.number.addEventListener("input", () => { els.toNumber.checked = true; refreshButtons(); });
  for (const radio of [els.toDirectory, els.toQueue, els.toNumber]) {
    radio.addEventListener("change", refreshButtons);
  }

  return {
    chosen(entry) {
      els.directoryName.textContent = entry.name;
      els.toDirectory.checked = true;
      refreshButtons();
    },
    update(state) {
      const before = transfer;
      talking = state.state === "talking" && !!state.call && !state.dialling;
      transfer = state.transfer || null;
      if (JSON.stringify(before) !== JSON.stringify(transfer)) {
        showState();
        if (transfer && transfer.active === false && before && before.active !== false) {
          say(els.state.textContent); // how it ended: back with the caller, transferred, failed
          if (state.state === "talking") els.blind.focus();
        }
      }
      refreshButtons();
    },
  };
}

// --------------------------------------------------------------------------- messages

function messages(config, selection, { say }) {
  const settings = config.messages || { categories: [], promise_hours: 24 };
  const form = $("message-form");
  const error = $("msg-error");
  const target = $("msg-target");
  const list = $("messages");
  const email = $("messages-email");
  const listError = $("messages-error");
  const promised = $("msg-promised-by");
  const caseNumber = $("msg-case-number");
  let call = null; // the call the agent is on (a message on it marks the call as handed off)
  let shown = ""; // the list as last drawn, to redraw only on a change
  let outcomes = ["reached", "no-answer", "wrong-number", "other"];

  function defaultPromise() {
    promised.value = localInput(serverClock.now() + settings.promise_hours * 3600 * 1000);
  }

  function clearErrors() {
    for (const [field, id] of Object.entries(FIELDS)) {
      const note = $(`msg-err-${field}`);
      note.textContent = "";
      note.hidden = true;
      $(id).removeAttribute("aria-invalid");
    }
    showError(error, "");
  }

  function showErrors(err) {
    const fields = (err.body && err.body.errors) || {};
    let first = null;
    for (const [field, reason] of Object.entries(fields)) {
      const note = $(`msg-err-${field}`);
      if (!note) continue;
      note.textContent = reason;
      note.hidden = false;
      const control = $(FIELDS[field]);
      control.setAttribute("aria-invalid", "true");
      if (!first && field !== "target") first = control;
    }
    const some = Object.keys(fields).length > 0;
    showError(error, some ? `${plain("text", "fix_fields")}: ${err.message}` : err.message);
    (first || $("dir-search")).focus();
  }

  async function submit(ev) {
    ev.preventDefault();
    clearErrors();
    const body = {
      target: selection.entry ? selection.entry.id : "",
      category: $("msg-category").value,
      question: $("msg-question").value.trim(),
      consent: $("msg-consent").checked,
    };
    for (const [field, id] of [["caller_name", "msg-caller-name"], ["callback_number", "msg-callback-number"],
      ["case_number", "msg-case-number"], ["promised_by", "msg-promised-by"]]) {
      const value = $(id).value.trim();
      if (value) body[field] = value;
    }
    if (call) body.call_id = call;
    try {
      const created = await api("/api/messages", { method: "POST", body });
      form.reset();
      defaultPromise();
      say(`${plain("text", "message_sent")} (#${created.id})`);
      await load();
    } catch (err) {
      showErrors(err);
    }
  }

  function messageLine(m) {
    const li = el("li", "message-item");
    li.dataset.message = m.id;
    li.dataset.delivery = m.delivery;
    const head = el("div", "msg-head");
    const to = labelled("span", "", "text", "to");
    head.append(to, ": ", el("strong", "msg-to", m.target_name || "–"));
    if (m.target_unit && m.target_unit !== m.target_name) head.append(`, ${m.target_unit}`);
    li.append(head);
    const when = el("div", "msg-promised");
    when.append(labelled("span", "", "text", "promised_by"), ": ");
    const time = el("time", "", localTime(m.promised_by));
    if (m.promised_by) time.dateTime = m.promised_by;
    when.append(time);
    if (m.overdue) when.append(" ", labelled("strong", "msg-overdue", "text", "overdue"));
    li.append(when);
    const delivery = labelled("div", "msg-delivery", "delivery", m.delivery);
    delivery.dataset.field = "delivery";
    if (m.delivery === "retrying" && m.last_error) delivery.append(el("span", "hint", ` (${m.last_error})`));
    li.append(delivery);
    const what = el("div", "msg-what");
    const [catSv] = pair("msg_category", m.category);
    what.append(el("span", "msg-category", catSv));
    if (m.case_number) what.append(" · ", el("span", "msg-case", m.case_number));
    if (m.caller_name) what.append(" · ", el("span", "msg-caller", m.caller_name));
    if (m.callback_masked) what.append(" · ", el("span", "msg-number", m.callback_masked));
    li.append(what);
    if (m.question) li.append(el("p", "msg-question", m.question));
    if (m.has_audio) {
      const label = labelled("div", "msg-voice", "text", "voice");
      const audio = document.createElement("audio");
      audio.controls = true;
      audio.preload = "none";
      audio.src = `/api/messages/${encodeURIComponent(m.id)}/audio`;
      audio.setAttribute("aria-label", plain("text", "voice"));
      li.append(label, audio);
    }
    if (m.callback_masked) {
      const reveal = labelled("button", "msg-reveal", "text", "show_number");
      reveal.type = "button";
      const number = el("span", "number");
      reveal.addEventListener("click", async () => {
        try {
          const full = await api(`/api/messages/${encodeURIComponent(m.id)}`);
          number.textContent = full.callback_number || m.callback_masked;
          reveal.hidden = true;
        } catch (err) {
          showError(listError, err.message);
        }
      });
      li.append(el("div", "msg-dial"));
      li.lastChild.append(reveal, " ", number);
    }
    li.append(closeForm(m));
    return li;
  }

  function closeForm(m) {
    const closing = el("form", "inline-form msg-close");
    const outcomeId = `msg-outcome-${m.id}`;
    const noteId = `msg-note-${m.id}`;
    const outcomeLabel = labelled("label", "", "text", "outcome");
    outcomeLabel.htmlFor = outcomeId;
    const outcome = el("select");
    outcome.id = outcomeId;
    outcome.append(...outcomes.map((o) => new Option(plain("outcome", o), o)));
    const noteLabel = labelled("label", "", "text", "note");
    noteLabel.htmlFor = noteId;
    const note = el("input");
    note.id = noteId;
    note.type = "text";
    note.maxLength = 1000;
    const button = labelled("button", "", "text", "register");
    button.type = "submit";
    button.dataset.action = "close";
    closing.append(outcomeLabel, outcome, noteLabel, note, button);
    closing.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      showError(listError, "");
      const body = { outcome: outcome.value };
      if (note.value.trim()) body.note = note.value.trim();
      try {
        await api(`/api/messages/${encodeURIComponent(m.id)}/close`, { method: "POST", body });
        say(`${plain("text", "message_closed")} (#${m.id})`);
        $("messages-title").focus();
        await load();
      } catch (err) {
        showError(listError, err.message);
      }
    });
    return closing;
  }

  async function load() {
    try {
      const data = await api("/api/messages?state=open");
      showError(listError, "");
      if (data.outcomes) outcomes = data.outcomes;
      email.hidden = data.email !== "not-configured";
      if (!email.hidden) setLabel(email, "text", "email_off");
      const drawn = JSON.stringify(data.messages);
      if (drawn === shown) return;
      shown = drawn;
      if (!data.messages.length) {
        list.replaceChildren(labelled("li", "empty", "text", "no_messages"));
        return;
      }
      list.replaceChildren(...data.messages.map(messageLine));
    } catch (err) {
      showError(listError, err.message);
    }
  }

  form.addEventListener("submit", submit);
  $("messages-title").tabIndex = -1;
  defaultPromise();
  load();
  setInterval(load, MESSAGES_EVERY_MS);

  return {
    chosen(entry) {
      target.textContent = "";
      target.append(el("strong", "", entry.name));
      if (entry.kind === "person" && entry.unit) target.append(`, ${entry.unit}`);
      target.dataset.entry = entry.id;
      $("msg-err-target").hidden = true;
    },
    update(state) {
      const now = state.call && ["talking", "wrapup"].includes(state.state) ? state.call : null;
      const fresh = now && now.call_id !== call;
      call = now ? now.call_id : null; // a message during the call or its wrap-up belongs to it
      if (fresh && now.case_number && !caseNumber.value) caseNumber.value = now.case_number;
    },
    load,
  };
}

/** POST JSON; an error carries the API's body (for "errors": {field: reason}). */
