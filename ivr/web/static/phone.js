// The browser test phone (/phone): calls a flow through the server's engine and queues.
// Server-sent events bring the engine's turns (prompts, then what the line waits for), the
// path of nodes and the call's status; keys, timeouts and the hang-up go back as POSTs.
// Prompts play from the recording when the flow has one, else by the browser's speech
// synthesis in the call's language. No build step, nothing from the internet.

const $ = (selector) => document.querySelector(selector);
const keypad = () => document.querySelectorAll("button[data-digit]");

let call = null; // { id, source, turn, wait, timer, ended }

// ------------------------------------------------------------------ playing prompts

const player = {
  run: 0, // bumped by stop(): a playback of an older run gives up
  audio: null,

  stop() {
    this.run += 1;
    if (this.audio) { this.audio.pause(); this.audio = null; }
    if (window.speechSynthesis) window.speechSynthesis.cancel();
  },

  // Plays the prompts in order; resolves true when all were played, false when stopped.
  async play(prompts) {
    this.stop();
    const run = this.run;
    for (const prompt of prompts) {
      if (run !== this.run) return false;
      showPrompt(prompt);
      let played = false;
      if (prompt.audio) played = await this.file(prompt.audio, run);
      if (!played && run === this.run) await this.speak(prompt, run);
    }
    return run === this.run;
  },

  file(url, run) {
    return new Promise((resolve) => {
      const audio = new Audio(url);
      this.audio = audio;
      const done = (ok) => { if (this.audio === audio) this.audio = null; resolve(ok); };
      audio.addEventListener("ended", () => done(true));
      audio.addEventListener("error", () => done(false));
      audio.play().catch(() => done(false));
      const poll = setInterval(() => { if (run !== this.run) { clearInterval(poll); done(true); } }, 200);
      audio.addEventListener("ended", () => clearInterval(poll));
      audio.addEventListener("error", () => clearInterval(poll));
    });
  },

  speak(prompt, run) {
    // Some browsers (headless ones, machines without voices) never end an utterance:
    // a prompt is over at the latest after the time it takes to say it.
    const limit = 1500 + (prompt.text.length / 12) * 1000;
    return new Promise((resolve) => {
      let finished = false;
      const done = () => { if (!finished) { finished = true; clearInterval(poll); resolve(); } };
      const started = Date.now();
      const poll = setInterval(() => {
        if (run !== this.run || Date.now() - started > limit) done();
      }, 100);
      const synth = window.speechSynthesis;
      if (!synth || !window.SpeechSynthesisUtterance) return;
      const utterance = new SpeechSynthesisUtterance(prompt.text);
      utterance.lang = prompt.voice;
      const voice = synth.getVoices().find((v) => v.lang === prompt.voice)
        || synth.getVoices().find((v) => v.lang.startsWith(prompt.language));
      if (voice) utterance.voice = voice;
      utterance.onend = done;
      utterance.onerror = done;
      synth.speak(utterance);
    });
  },
};

function showPrompt(prompt) {
  const el = $("#phone-prompt");
  el.textContent = prompt ? prompt.text : "";
  el.lang = prompt ? prompt.language : "";
}

// ------------------------------------------------------------------ the server

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body || {}),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok && response.status !== 409) {
    const message = data.error || response.statusText;
    setStatus(`Fel / Error: ${message}`, "error");
    throw new Error(message);
  }
  return data;
}

function setStatus(text, state) {
  const el = $("#phone-status");
  el.textContent = text;
  el.dataset.state = state || "";
}

// ------------------------------------------------------------------ a call

async function startCall(event) {
  event.preventDefault();
  if (call && !call.ended) return;
  $("#phone-path").replaceChildren();
  showPrompt(null);
  $("#phone-call").disabled = true;
  let data;
  try {
    data = await post("/phone/calls", { flow: $("#phone-flow").value, caller: $("#phone-caller").value });
  } catch {
    $("#phone-call").disabled = false;
    return;
  }
  call = { id: data.call_id, turn: 0, wait: null, timer: null, ended: false };
  document.body.dataset.call = call.id;
  setStatus("Ringer upp / Calling", "flow");
  $("#phone-hangup").disabled = false;
  for (const button of keypad()) button.disabled = false;
  const source = new EventSource(data.events);
  call.source = source;
  const mine = call;
  source.addEventListener("phone", (e) => { if (call === mine) onEvent(JSON.parse(e.data)); });
}

function onEvent(event) {
  switch (event.type) {
    case "path": return showPath(event.nodes);
    case "status": return onStatus(event);
    case "turn": return onTurn(event);
    default: return undefined;
  }
}

function showPath(nodes) {
  const list = $("#phone-path");
  for (let i = list.children.length; i < nodes.length; i += 1) {
    const item = document.createElement("li");
    item.dataset.node = nodes[i];
    item.textContent = nodes[i];
    list.append(item);
  }
}

function onStatus(event) {
  let text = `${event.sv} / ${event.en}`;
  if (event.state === "queue" && event.queue) text += ` (${event.queue})`;
  setStatus(text, event.state);
  if (event.state === "ended") endCall();
}

async function onTurn(event) {
  clearTimer();
  if (event.wait) {
    call.turn = event.turn;
    call.wait = event.wait;
  }
  const wait = event.wait;
  const prompts = [...event.plays, ...(wait && wait.prompts ? wait.prompts : [])];
  const mine = call;
  const complete = await player.play(prompts);
  if (complete && call === mine && !mine.ended && mine.wait === wait) startTimer();
}

// The Gather timer runs after the prompts (and again after each key); the recording limit too.
function startTimer() {
  clearTimer();
  const wait = call && call.wait;
  if (!wait || call.ended) return;
  let seconds = null;
  if (wait.kind === "gather") seconds = wait.timeout_s;
  if (wait.kind === "record") seconds = wait.max_length_s;
  if (seconds == null) return;
  const mine = call;
  const turn = call.turn;
  call.timer = setTimeout(() => {
    if (call === mine && !mine.ended && mine.turn === turn) {
      mine.wait = null;
      post(`/phone/calls/${mine.id}/timeout`, { turn }).catch(() => {});
    }
  }, seconds * 1000);
}

function clearTimer() {
  if (call && call.timer) {
    clearTimeout(call.timer);
    call.timer = null;
  }
}

async function press(digit) {
  if (!call || call.ended) return;
  const waiting = call.wait && (call.wait.kind === "gather" || call.wait.kind === "record");
  if (waiting) {
    player.stop(); // a key interrupts the prompt, as on a phone
    showPrompt(null);
    startTimer();
  }
  const shown = $("#phone-keys");
  if (shown) shown.textContent = (shown.textContent + digit).slice(-16);
  await post(`/phone/calls/${call.id}/digits`, { digits: digit }).catch(() => {});
}

async function hangUp() {
  if (!call || call.ended) return;
  player.stop();
  await post(`/phone/calls/${call.id}/hangup`).catch(() => {});
}

function endCall() {
  if (!call) return;
  call.ended = true;
  clearTimer();
  if (call.source) call.source.close();
  $("#phone-hangup").disabled = true;
  $("#phone-call").disabled = false;
  for (const button of keypad()) button.disabled = true;
}

// ------------------------------------------------------------------ wiring

$("#phone-form").addEventListener("submit", startCall);
$("#phone-hangup").addEventListener("click", hangUp);
for (const button of keypad()) button.addEventListener("click", () => press(button.dataset.digit));
document.addEventListener("keydown", (e) => {
  if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement) return;
  if (/^[0-9*#]$/.test(e.key)) press(e.key);
});
// Closing the tab hangs up (the server also hangs up a call left without a browser).
window.addEventListener("pagehide", () => {
  if (call && !call.ended) {
    navigator.sendBeacon(`/phone/calls/${call.id}/hangup`, new Blob(["{}"], { type: "application/json" }));
  }
});
