// The directory page (supervisors): every entry, editing one (PUT), its status (POST
// .../status), removing it (DELETE) and importing a CSV file (POST /api/directory/import).
import { api, plain, readConfig, setLabel, setLabels, showError } from "./common.js";
import { localInput, localTime } from "./tools.js";

const config = readConfig("directory-config");
setLabels(config.labels);
const $ = (id) => document.getElementById(id);
const els = {
  status: $("directory-status"), error: $("directory-error"), filter: $("entry-filter"),
  count: $("entries-count"),
  body: document.querySelector("#entries tbody"), entryForm: $("entry-form"), heading: $("entry-heading"),
  statusForm: $("status-form"), statusEntry: $("status-entry"), statusValue: $("status-value"),
  statusNote: $("status-note"), statusUntil: $("status-until"), statusSave: $("status-save"),
  statusAvailable: $("status-available"), importForm: $("import-form"), importFile: $("import-file"),
  importCheck: $("import-check"), importResult: $("import-result"), importProblems: $("import-problems"),
};
const FORM = { // entry field -> input
  id: "entry-id", kind: "entry-kind", name: "entry-name", title: "entry-title-field", unit: "entry-unit",
  phone: "entry-phone", extension: "entry-extension", email: "entry-email", twilio: "entry-twilio",
  asterisk: "entry-asterisk", languages: "entry-languages", topics: "entry-topics", hours: "entry-hours",
};

let entries = [];
let editing = null; // the entry in the form (null: a new one)
let statusFor = null; // the entry the status form is for

function say(message) { els.status.textContent = message; }

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text || "";
  return td;
}

function button(key, action, entry) {
  const b = document.createElement("button");
  b.type = "button";
  b.dataset.action = action;
  setLabel(b, "text", key);
  b.setAttribute("aria-label", `${plain("text", key)}: ${entry.name}`);
  return b;
}

function row(entry) {
  const tr = document.createElement("tr");
  tr.dataset.entry = entry.id;
  const name = document.createElement("th");
  name.scope = "row";
  name.textContent = entry.name;
  const kind = document.createElement("span");
  kind.className = "dir-kind";
  setLabel(kind, "dir_kind", entry.kind);
  name.append(" ", kind);
  const where = [entry.title, entry.kind === "person" ? entry.unit : null].filter(Boolean).join(", ");
  const phone = [entry.phone, entry.extension ? `${plain("text", "ext")} ${entry.extension}` : ""]
    .filter(Boolean).join(" · ");
  const status = document.createElement("td");
  status.className = "dir-status";
  const now = entry.status_now || entry.status;
  status.dataset.status = now;
  setLabel(status, "dir_status", now);
  const until = entry.status_until ? `${plain("text", "until")} ${localTime(entry.status_until)}` : "";
  const detail = now === "available" ? "" : [entry.status_note, until].filter(Boolean).join(", ");
  if (detail) status.append(document.createElement("br"), detail);
  const actions = document.createElement("td");
  const box = document.createElement("div");
  box.className = "actions";
  box.append(button("edit", "edit", entry), button("set_status", "status", entry),
    button("delete", "delete", entry));
  actions.append(box);
  tr.append(name, cell(where), cell(phone), status, actions);
  return tr;
}

function draw() {
  const words = els.filter.value.trim().toLocaleLowerCase("sv").split(/\s+/).filter(Boolean);
  const shown = entries.filter((e) => {
    const text = [e.name, e.title, e.unit, e.phone, e.extension, ...(e.topics || [])]
      .join(" ").toLocaleLowerCase("sv");
    return words.every((w) => text.includes(w));
  });
  els.body.replaceChildren(...shown.map(row));
  setLabel(els.count, "text", "entries", { n: shown.length });
}

async function load() {
  try {
    entries = (await api("/api/directory")).results;
    draw();
  } catch (err) {
    showError(els.error, err.message);
  }
}

function clearErrors() {
  for (const [key, id] of Object.entries(FORM)) {
    const note = $(`entry-err-${key}`);
    note.hidden = true;
    note.textContent = "";
    $(id).removeAttribute("aria-invalid");
  }
  showError(els.error, "");
}

function fieldError(key, message) {
  const note = $(`entry-err-${key}`);
  if (!note) return false;
  note.textContent = message;
  note.hidden = false;
  $(FORM[key]).setAttribute("aria-invalid", "true");
  return true;
}

function edit(entry) {
  clearErrors();
  editing = entry;
  const values = entry ? {
    ...entry, twilio: (entry.endpoints || {}).twilio, asterisk: (entry.endpoints || {}).asterisk,
    languages: (entry.languages || []).join(", "), topics: (entry.topics || []).join(", "),
  } : { kind: "person" };
  for (const [key, id] of Object.entries(FORM)) $(id).value = values[key] || "";
  $("entry-id").readOnly = !!entry;
  if (entry) els.heading.textContent = entry.name;
  else setLabel(els.heading, "text", "new");
  $("entry-title").focus();
}

function chooseForStatus(entry) {
  statusFor = entry;
  els.statusEntry.textContent = entry.name;
  els.statusValue.value = entry.status_now || entry.status;
  els.statusNote.value = entry.status_note || "";
  els.statusUntil.value = entry.status_until ? localInput(Date.parse(entry.status_until)) : "";
  els.statusSave.disabled = false;
  els.statusAvailable.disabled = false;
  $("status-title").focus();
}


els.body.addEventListener("click", async (ev) => {
  const b = ev.target.closest("button[data-action]");
  if (!b) return;
  const entry = entries.find((e) => e.id === b.closest("tr").dataset.entry);
  if (!entry) return;
  if (b.dataset.action === "edit") edit(entry);
  else if (b.dataset.action === "status") chooseForStatus(entry);
  else if (b.dataset.action === "delete") {
    if (!window.confirm(plain("text", "confirm_delete", { name: entry.name }))) return;
    try {
      await api(`/api/directory/${encodeURIComponent(entry.id)}`, { method: "DELETE" });
      say(`${plain("text", "deleted")}: ${entry.name}`);
      $("entries-title").focus();
      await load();
    } catch (err) {
      showError(els.error, err.message);
    }
  }
});

els.entryForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  clearErrors();
  const value = (key) => $(FORM[key]).value.trim();
  const id = editing ? editing.id : value("id");
  if (!id) {
    fieldError("id", plain("text", "id_needed"));
    $(FORM.id).focus();
    return;
  }
  const body = {};
  const keys = ["kind", "name", "title", "unit", "phone", "extension", "email", "languages", "topics",
    "hours"];
  for (const key of keys) {
    if (value(key)) body[key] = value(key);
  }
  const endpoints = {};
  for (const key of ["twilio", "asterisk"]) if (value(key)) endpoints[key] = value(key);
  body.endpoints = endpoints;
  if (editing) { // a PUT replaces the entry: keep its status
    for (const key of ["status", "status_note", "status_until"]) if (editing[key]) body[key] = editing[key];
  }
  try {
    const saved = await api(`/api/directory/${encodeURIComponent(id)}`, { method: "PUT", body });
    say(`${plain("text", "saved")}: ${saved.name}`);
    editing = saved;
    $("entry-id").readOnly = true;
    els.heading.textContent = saved.name;
    await load();
  } catch (err) {
    const problems = (err.body && err.body.problems) || [];
    let first = null;
    for (const p of problems) {
      const key = p.field.replace(/^endpoints\./, "");
      if (fieldError(key, p.message) && !first) first = $(FORM[key]);
    }
    showError(els.error, err.message);
    if (first) first.focus();
  }
});

async function setStatus(body) {
  if (!statusFor) return;
  try {
    const saved = await api(`/api/directory/${encodeURIComponent(statusFor.id)}/status`, { method: "POST", body });
    statusFor = saved;
    say(`${plain("text", "saved")}: ${saved.name}, ${plain("dir_status", saved.status_now || saved.status)}`);
    await load();
  } catch (err) {
    showError(els.error, err.message);
  }
}

els.statusForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  showError(els.error, "");
  const body = { status: els.statusValue.value, note: els.statusNote.value.trim() || null };
  if (els.statusUntil.value) body.until = els.statusUntil.value;
  setStatus(body);
});
els.statusAvailable.addEventListener("click", () => {
  els.statusValue.value = "available";
  els.statusNote.value = "";
  els.statusUntil.value = "";
  setStatus({ status: "available", note: null });
});

async function importFile(dryRun) {
  showError(els.error, "");
  els.importProblems.hidden = true;
  els.importProblems.replaceChildren();
  const file = els.importFile.files[0];
  if (!file) { els.importFile.focus(); return; }
  try {
    const result = await api(`/api/directory/import${dryRun ? "?dry_run=1" : ""}`, { method: "POST", body: file });
    const done = plain("text", dryRun ? "checked" : "imported");
    els.importResult.textContent = `${done}: ${plain("text", "import_counts", result)}`;
    if (!dryRun) await load();
  } catch (err) {
    const problems = (err.body && err.body.problems) || [];
    if (problems.length) {
      setLabel(els.importResult, "text", "import_problems", { n: problems.length });
      els.importProblems.replaceChildren(...problems.map((p) => {
        const li = document.createElement("li");
        const where = p.line ? `${file.name}:${p.line}` : file.name;
        li.textContent = `${where}: ${p.column ? `${p.column}: ` : ""}${p.message}`;
        return li;
      }));
      els.importProblems.hidden = false;
    } else {
      showError(els.error, err.message);
    }
  }
}

els.importCheck.addEventListener("click", () => importFile(true));
els.importForm.addEventListener("submit", (ev) => { ev.preventDefault(); importFile(false); });
els.filter.addEventListener("input", draw);
$("entry-new").addEventListener("click", () => edit(null));
load();
