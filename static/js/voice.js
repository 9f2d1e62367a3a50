// The voice page: the microphone up and the AI's voice down one WebSocket to /ws/voice/.
//
// Protocol reference: docs/protocol.md ("Voice over WebSocket"). Binary frames are
// PCM16 mono little-endian at 24 kHz both ways. Two AudioWorklets do the
// audio work off the main thread: voice-capture-worklet.js resamples the mic
// to 24 kHz and cuts 20 ms frames; voice-playback-worklet.js plays the
// answer's frames gaplessly and counts what was heard, which this file
// reports as `playback {item_id, played_ms}` so the server knows where an
// interrupted answer was cut.
// Rules this file keeps:
// - the server decides turns and interruptions; the page never flushes the
//   answer on its own, except when the person presses Stop. Speech heard while
//   the AI is audible may be its own echo, so the page shows it as speech only
//   once the server interrupts (or the AI has gone quiet);
// - after a flush, audio frames still in flight for the flushed item are
//   dropped until the next `audio_start`;
// - streamed text is plain text (Text nodes), never HTML.

import {
  CLOSE_TOO_MANY_FRAMES,
  CLOSE_UNAUTHENTICATED,
  clearConnectionTimers,
  pongReceived,
  scheduleReconnect,
  socketUrl,
  startHeartbeat,
} from "./connection.js";
import { el, formatNumber, thinkingIndicator } from "./messages.js";

const config = JSON.parse(document.getElementById("voice-config").textContent);

const NOTICE_MS = 6000;
const STICK_THRESHOLD_PX = 64;
// The meter's range: quieter than the floor shows empty.
const METER_FLOOR_DBFS = -60;
const MIC_CONSTRAINTS = {
  audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
};

const $ = (id) => document.getElementById(id);
const ui = {
  layout: $("voice-layout"),
  subtitle: $("voice-subtitle"),
  connection: $("connection-state"),
  lastLatency: $("last-latency"),
  transcript: $("transcript"),
  inner: $("transcript-inner"),
  notice: $("notice"),
  micProblem: $("mic-problem"),
  fatal: $("fatal"),
  fatalText: $("fatal-text"),
  reconnect: $("reconnect-button"),
  mic: $("mic-button"),
  micLabel: $("mic-label"),
  vad: $("vad-state"),
  meter: $("level-meter"),
  meterFill: $("level-fill"),
  playback: $("playback-state"),
  stop: $("stop-button"),
  form: $("text-form"),
  input: $("text-input"),
  send: $("send-button"),
};

const state = {
  socket: null,
  connected: false,
  sessionId: null,
  attempt: 0,
  timers: { retry: 0, countdown: 0, ping: 0, pong: 0, notice: 0 },
  fatal: false, // the server ended the voice session: reconnect only when asked
  leaving: false,
  // audio
  context: null,
  audioReady: null, // the promise of the worklets being loaded
  playbackNode: null,
  captureNode: null,
  micStream: null,
  micSource: null,
  micOn: false,
  micStarting: false,
  level: METER_FLOOR_DBFS,
  levelFrame: 0,
  // the answer's audio
  audioItem: null, // the item whose frames are arriving (from `audio_start`)
  acceptAudio: false, // false after a flush, until the next `audio_start`
  playing: false,
  playedMs: new Map(), // item id -> ms heard
  // the conversation
  responding: false,
  turn: null, // the turn of the response under way
  stopRequested: null, // the turn the person pressed Stop on
  speechHeard: false, // between the VAD's speech_started and speech_stopped
  typed: [], // typed turns, newest last, in case the server echoes one as a transcript
  articles: new Map(), // item id -> article
  latencies: new Map(), // turn -> its `latency` event, for a turn whose article is not there yet
  stickToBottom: true,
  counters: { framesSent: 0, audioFrames: 0, interruptions: 0, flushes: 0 },
};

// --- transcript ------------------------------------------------------------------------
function buildTurn(role, { itemId = null, turn = null, status = "streaming", text = "", source = "voice", before = null } = {}) {
  const body = el("div", { class: "message-body is-plain", "data-testid": "turn-text" });
  if (text) body.textContent = text;
  else body.append(thinkingIndicator(role === "user" ? "Transcribing…" : "The AI is thinking…"));
  const article = el(
    "article",
    {
      class: `message message-${role} voice-turn`,
      "data-testid": "voice-turn",
      "data-role": role,
      "data-status": status,
      "data-item-id": itemId ?? "",
      "data-turn": turn ?? "",
      "data-session": state.sessionId ?? "",
      "data-source": source,
    },
    el("div", { class: "avatar", "aria-hidden": "true", text: role === "user" ? "You" : "AI" }),
    el(
      "div",
      { class: "message-content" },
      el("div", { class: "message-meta" }, el("span", { class: "message-author", text: role === "user" ? "You" : "AI" })),
      body,
      el("div", { class: "message-footer" }),
    ),
  );
  if (itemId) state.articles.set(itemId, article);
  $("empty-state")?.remove();
  if (before) before.before(article);
  else ui.inner.append(article);
  scrollToBottomIfStuck();
  return article;
}

function bodyOf(article) {
  return article.querySelector(".message-body");
}

function setText(article, text) {
  bodyOf(article).textContent = text;
  scrollToBottomIfStuck();
}

function appendText(article, delta) {
  const body = bodyOf(article);
  if (body.querySelector(".thinking")) body.replaceChildren();
  body.append(delta);
  scrollToBottomIfStuck();
}

function addMarker(article, kind, text) {
  const footer = article.querySelector(".message-footer");
  footer.querySelector(`[data-marker="${kind}"]`)?.remove();
  footer.append(el("span", { class: `marker marker-${kind}`, "data-marker": kind, "data-testid": `${kind}-marker`, text }));
}

function claim(article, itemId) {
  article.dataset.itemId = itemId;
  state.articles.set(itemId, article);
  return article;
}

/** The person's turn of `itemId`: a typed one with its text, or a new one.
 *
 * A spoken turn's transcript may arrive after its answer started: it then goes
 * before that answer, unless a turn of the person's is already there.
 */
function userTurn(itemId, text) {
  const known = state.articles.get(itemId);
  if (known) return known;
  const typedIndex = text === undefined ? -1 : state.typed.findIndex((article) => bodyOf(article).textContent === text);
  if (typedIndex >= 0) return claim(state.typed.splice(typedIndex, 1)[0], itemId);
  const turns = ui.inner.querySelectorAll(".voice-turn");
  const last = turns[turns.length - 1];
  const previous = turns[turns.length - 2];
  const answerFirst = last?.dataset.role === "assistant" && last.dataset.turn === String(state.turn) && previous?.dataset.role !== "user";
  return buildTurn("user", { itemId, before: answerFirst ? last : null });
}

/** The AI's turn of `itemId`: the placeholder of the response under way, or a new one. */
function assistantTurn(itemId, turn = state.turn) {
  const known = state.articles.get(itemId);
  if (known) return known;
  const session = CSS.escape(String(state.sessionId ?? ""));
  const placeholder = ui.inner.querySelector(
    `.voice-turn[data-role="assistant"][data-session="${session}"][data-item-id=""][data-status="streaming"]`,
  );
  if (placeholder) {
    if (turn !== null) placeholder.dataset.turn = turn;
    return claim(placeholder, itemId);
  }
  return buildTurn("assistant", { itemId, turn });
}

/** The AI's turns numbered `turn` in this session (a new session counts from 1 again). */
function turnSelector(turn) {
  const session = CSS.escape(String(state.sessionId ?? ""));
  return `.voice-turn[data-role="assistant"][data-session="${session}"][data-turn="${CSS.escape(String(turn))}"]`;
}

function articleOfTurn(turn) {
  return ui.inner.querySelector(turnSelector(turn));
}

const LATENCY_PARTS = [
  ["vad_wait_ms", "waiting for the end of speech"],
  ["upstream_ms", "the model"],
  ["server_ms", "this server"],
];

function latencyTitle(event) {
  const parts = LATENCY_PARTS.filter(([key]) => typeof event?.[key] === "number").map(
    ([key, label]) => `${label} ${formatNumber(event[key], 0)} ms`,
  );
  const what = "Voice-to-voice latency: from the end of your speech to the first sound of the answer";
  return parts.length ? `${what} (${parts.join(", ")})` : what;
}

function showLatency(article, ms, event = null) {
  const footer = article.querySelector(".message-footer");
  footer.querySelector("[data-testid=voice-latency]")?.remove();
  footer.prepend(
    el("span", {
      class: "latency-badge",
      "data-testid": "voice-latency",
      "data-ms": Math.round(ms),
      title: latencyTitle(event),
      text: `Voice-to-voice ${formatNumber(ms, 0)} ms`,
    }),
  );
}

/** The end of an answer: completed, cancelled, failed, or interrupted (by speech or Stop). */
function finishAssistant(turn, status) {
  const articles = turn === null ? [] : [...ui.inner.querySelectorAll(turnSelector(turn))];
  for (const article of articles) {
    if (article.dataset.status === "streaming") article.dataset.status = status;
    const body = bodyOf(article);
    if (body.querySelector(".thinking")) {
      if (status === "completed") article.remove();
      else body.replaceChildren();
    }
    if (status === "cancelled" && !article.querySelector("[data-marker]")) addMarker(article, "stopped", "Stopped");
    if (status === "failed") addMarker(article, "failed", "Failed");
  }
}

// --- scrolling ---------------------------------------------------------------------------
function scrollToBottomIfStuck() {
  if (state.stickToBottom) ui.transcript.scrollTop = ui.transcript.scrollHeight;
}

ui.transcript.addEventListener(
  "scroll",
  () => {
    const box = ui.transcript;
    state.stickToBottom = box.scrollHeight - box.scrollTop - box.clientHeight < STICK_THRESHOLD_PX;
  },
  { passive: true },
);

// --- audio -------------------------------------------------------------------------------
/** The AudioContext and both worklets; made on the first press (browsers want a gesture). */
function ensureAudio() {
  if (state.audioReady) return state.audioReady;
  state.audioReady = (async () => {
    if (!window.AudioContext || !window.AudioWorkletNode) {
      throw new VoiceProblem("This browser cannot process audio here (no AudioWorklet). Try a recent Chrome, Edge, Firefox or Safari.");
    }
    const context = new AudioContext({ latencyHint: "interactive" });
    if (!context.audioWorklet) {
      context.close();
      throw new VoiceProblem("Voice needs a secure connection: open this page over HTTPS.");
    }
    await Promise.all([
      context.audioWorklet.addModule(ui.layout.dataset.captureWorklet),
      context.audioWorklet.addModule(ui.layout.dataset.playbackWorklet),
    ]);
    const playback = new AudioWorkletNode(context, "voice-playback", {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: { sourceRate: config.sampleRate },
    });
    playback.port.onmessage = (event) => onPlaybackReport(event.data);
    playback.connect(context.destination);
    state.context = context;
    state.playbackNode = playback;
    ui.layout.dataset.contextRate = context.sampleRate;
    return context;
  })();
  state.audioReady.catch(() => {
    state.audioReady = null;
  });
  return state.audioReady;
}

class VoiceProblem extends Error {}

function micProblemText(error) {
  if (error instanceof VoiceProblem) return error.message;
  switch (error?.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access was denied. Allow the microphone for this site in the browser's settings, then press the microphone again. You can still type below.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Plug one in (or enable it in the system settings), then press the microphone again. You can still type below.";
    case "NotReadableError":
    case "AbortError":
      return "The microphone could not be started: another application may be using it.";
    default:
      return `The microphone could not be started (${error?.message || error}).`;
  }
}

async function startMic() {
  if (state.micOn || state.micStarting) return;
  state.micStarting = true;
  hideMicProblem();
  renderMic();
  let stream = null;
  try {
    if (!navigator.mediaDevices?.getUserMedia) {
      throw new VoiceProblem("Voice needs a secure connection and a browser with microphone access: open this page over HTTPS.");
    }
    const audio = ensureAudio(); // now, while the click still counts as a gesture
    stream = await navigator.mediaDevices.getUserMedia(MIC_CONSTRAINTS);
    const context = await audio;
    await context.resume();
    const capture = new AudioWorkletNode(context, "voice-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 0,
      channelCount: 1,
      channelCountMode: "explicit",
      processorOptions: { targetRate: config.sampleRate, frameMs: config.frameMs },
    });
    capture.port.onmessage = (event) => onCaptureFrame(event.data);
    const source = context.createMediaStreamSource(stream);
    source.connect(capture);
    for (const track of stream.getAudioTracks()) track.addEventListener("ended", () => stopMic("The microphone was disconnected."));
    Object.assign(state, { micStream: stream, micSource: source, captureNode: capture, micOn: true });
    showVad();
  } catch (error) {
    for (const track of stream?.getTracks() ?? []) track.stop();
    showMicProblem(micProblemText(error));
    showVad();
  } finally {
    state.micStarting = false;
    renderMic();
  }
}

function stopMic(problem = null) {
  state.captureNode?.port.postMessage({ type: "stop" });
  state.micSource?.disconnect();
  state.captureNode?.disconnect();
  for (const track of state.micStream?.getTracks() ?? []) track.stop();
  Object.assign(state, { micStream: null, micSource: null, captureNode: null, micOn: false });
  state.level = METER_FLOOR_DBFS;
  drawLevel();
  showVad();
  renderMic();
  if (problem) showMicProblem(problem);
}

function onCaptureFrame(message) {
  if (message.type !== "frame" || !state.micOn) return;
  state.level = message.dbfs;
  if (!state.levelFrame) state.levelFrame = requestAnimationFrame(drawLevel);
  // Live audio is not kept while the socket is down: it would arrive stale.
  if (inSession()) {
    state.socket.send(message.pcm);
    state.counters.framesSent += 1;
    ui.layout.dataset.framesSent = state.counters.framesSent;
  }
}

function drawLevel() {
  state.levelFrame = 0;
  const dbfs = Number.isFinite(state.level) ? state.level : METER_FLOOR_DBFS;
  const fraction = Math.min(1, Math.max(0, (dbfs - METER_FLOOR_DBFS) / -METER_FLOOR_DBFS));
  ui.meterFill.style.transform = `scaleX(${fraction.toFixed(3)})`;
  ui.meter.dataset.dbfs = dbfs.toFixed(1);
}

function onAudioFrame(data) {
  state.counters.audioFrames += 1;
  ui.layout.dataset.audioFrames = state.counters.audioFrames;
  if (!state.acceptAudio || !state.playbackNode || data.byteLength % 2) return;
  state.playbackNode.port.postMessage({ type: "audio", item: state.audioItem, pcm: data }, [data]);
  setPlaying(true);
}

/** Drop every queued sample now (Stop, an interruption, a lost socket). */
function flushPlayback() {
  state.acceptAudio = false;
  state.playbackNode?.port.postMessage({ type: "flush" });
  setPlaying(false);
}

function onPlaybackReport(report) {
  if (report.type === "flushed") {
    state.counters.flushes += 1;
    ui.layout.dataset.flushes = state.counters.flushes;
  }
  if (report.item) {
    const playedMs = report.samples / (config.sampleRate / 1000);
    state.playedMs.set(report.item, playedMs);
    ui.layout.dataset.playedMs = Math.round([...state.playedMs.values()].reduce((sum, ms) => sum + ms, 0));
    ui.layout.dataset.playedItem = report.item;
    // The server only cares about the item it is sending; after a flush this is
    // the exact figure where the answer was cut.
    if (report.item === state.audioItem) {
      sendFrame({ type: "playback", item_id: report.item, played_ms: Math.round(playedMs) });
    }
  }
  setPlaying(report.type === "played");
}

function setPlaying(playing) {
  state.playing = playing;
  ui.playback.dataset.state = playing ? "playing" : "idle";
  ui.playback.textContent = playing ? "AI speaking" : "";
  showVad();
  updateControls();
}

// --- server events -------------------------------------------------------------------
const handlers = {
  session(event) {
    if (ui.inner.querySelector(".voice-turn")) {
      ui.inner.append(el("p", { class: "voice-divider", "data-testid": "session-divider", text: "New voice session" }));
    }
    state.sessionId = event.session_id;
    state.latencies.clear(); // turns are numbered per session
    ui.layout.dataset.sessionId = event.session_id;
    ui.layout.dataset.vadBackend = event.vad_backend ?? "";
    if (event.sample_rate && event.sample_rate !== config.sampleRate) {
      showNotice(`The server sends audio at ${event.sample_rate} Hz; this page plays ${config.sampleRate} Hz.`);
    }
    ui.subtitle.textContent = event.demo
      ? "The demo model: it says back what it heard."
      : `Speak with ${event.model}; it answers aloud.`;
    setConnection("connected");
    updateControls();
  },

  vad(event) {
    // Speech while the AI talks may be its own echo: the server decides, and
    // says `interrupted` if it was the person.
    state.speechHeard = event.state === "speech_started";
    showVad();
    ui.vad.dataset.atMs = event.at_ms;
    ui.layout.dataset.speechStarts = Number(ui.layout.dataset.speechStarts || 0) + (event.state === "speech_started" ? 1 : 0);
  },

  transcript(event) {
    const article = event.role === "user" ? userTurn(event.item_id, event.final ? event.text : undefined) : assistantTurn(event.item_id);
    if (event.final) {
      if (typeof event.text === "string" && (event.text || event.role === "user")) setText(article, event.text);
      if (event.role === "user") article.dataset.status = "final";
      article.dataset.transcribed = "true";
    } else if (event.delta) {
      appendText(article, event.delta);
    }
  },

  response_text(event) {
    appendText(assistantTurn(event.item_id), event.delta);
  },

  audio_start(event) {
    state.audioItem = event.item_id;
    state.acceptAudio = true;
    state.playedMs.set(event.item_id, 0);
    assistantTurn(event.item_id, event.turn ?? state.turn);
  },

  response(event) {
    if (event.status === "started") {
      state.responding = true;
      state.turn = event.turn;
      if (!articleOfTurn(event.turn)) buildTurn("assistant", { turn: event.turn });
      const latency = state.latencies.get(event.turn);
      if (latency !== undefined) showLatency(articleOfTurn(event.turn), latency.voice_to_voice_ms, latency);
    } else {
      state.responding = false;
      finishAssistant(event.turn, event.status);
      if (event.status === "failed") showNotice("The answer failed.");
    }
    updateControls();
  },

  interrupted(event) {
    flushPlayback();
    // The answer is over: no `response` event follows an interrupted one.
    if (event.turn === state.turn) state.responding = false;
    const stopped = state.stopRequested === event.turn;
    state.stopRequested = null;
    const article = (event.item_id && state.articles.get(event.item_id)) || articleOfTurn(event.turn);
    if (article) {
      const seconds = formatNumber((event.played_ms ?? 0) / 1000, 1);
      if (stopped) addMarker(article, "stopped", `Stopped after ${seconds} s`);
      else addMarker(article, "interrupted", `Interrupted after ${seconds} s`);
    }
    finishAssistant(event.turn, stopped ? "cancelled" : "interrupted");
    if (!stopped) {
      state.counters.interruptions += 1;
      ui.layout.dataset.interruptions = state.counters.interruptions;
    }
    updateControls();
  },

  latency(event) {
    const ms = event.voice_to_voice_ms;
    if (ms === null || ms === undefined) return; // a typed turn: no speech to measure from
    state.latencies.set(event.turn, event);
    const article = articleOfTurn(event.turn);
    if (article) showLatency(article, ms, event);
    ui.lastLatency.hidden = false;
    ui.lastLatency.dataset.ms = Math.round(ms);
    ui.lastLatency.textContent = `${formatNumber(ms, 0)} ms`;
  },

  error(event) {
    if (event.fatal) {
      state.fatal = true;
      flushPlayback();
      showFatal(event.message || "The voice session ended.");
      return;
    }
    if (event.code === "not_streaming") return; // Stop crossed the answer's end
    showNotice(event.message);
  },

  pong() {
    pongReceived(state);
  },
};

function handleFrame(data) {
  if (data instanceof ArrayBuffer) {
    onAudioFrame(data);
    return;
  }
  let event;
  try {
    event = JSON.parse(data);
  } catch {
    return;
  }
  handlers[event.type]?.(event);
}

/** The voice session is open: `session` came on the current socket. */
function inSession() {
  return state.connected && state.sessionId !== null && state.socket?.readyState === WebSocket.OPEN;
}

/** Send a JSON frame; all but `ping` wait for the session (the server refuses them before). */
function sendFrame(frame) {
  const ready = frame.type === "ping" ? state.connected && state.socket?.readyState === WebSocket.OPEN : inSession();
  if (!ready) return false;
  state.socket.send(JSON.stringify(frame));
  return true;
}

// --- controls ----------------------------------------------------------------------------
const VAD_LABELS = { off: "Microphone off", listening: "Listening", speech: "Speech" };

/** What the VAD hears, as far as the page can tell (see the rules at the top). */
function showVad() {
  if (!state.micOn) setVad("off");
  else setVad(state.speechHeard && !state.playing ? "speech" : "listening");
}

function setVad(name) {
  ui.vad.dataset.state = name;
  ui.vad.textContent = VAD_LABELS[name];
}

function renderMic() {
  ui.mic.setAttribute("aria-pressed", String(state.micOn));
  ui.mic.dataset.state = state.micStarting ? "starting" : state.micOn ? "on" : "off";
  ui.micLabel.textContent = state.micStarting ? "Starting…" : state.micOn ? "Turn off the mic" : "Start talking";
  ui.mic.disabled = state.micStarting;
}

function updateControls() {
  ui.stop.disabled = !(state.responding || state.playing);
  ui.send.disabled = !inSession() || !ui.input.value.trim();
}

function showNotice(text) {
  ui.notice.textContent = text;
  ui.notice.hidden = false;
  clearTimeout(state.timers.notice);
  state.timers.notice = setTimeout(() => {
    ui.notice.hidden = true;
  }, NOTICE_MS);
}

function showMicProblem(text) {
  ui.micProblem.textContent = text;
  ui.micProblem.hidden = false;
}

function hideMicProblem() {
  ui.micProblem.hidden = true;
  ui.micProblem.textContent = "";
}

function showFatal(text) {
  ui.fatalText.textContent = text;
  ui.fatal.hidden = false;
  setConnection("offline", "Session ended");
}

function stopAnswer() {
  state.stopRequested = state.turn;
  sendFrame({ type: "cancel" });
  flushPlayback();
}

function sendText(text) {
  const content = text.trim();
  if (!content || !sendFrame({ type: "text", content })) return false;
  state.typed = [...state.typed.slice(-4), buildTurn("user", { status: "final", text: content, source: "typed" })];
  state.stickToBottom = true;
  scrollToBottomIfStuck();
  // The answer is spoken: the audio has to be ready to play it.
  ensureAudio()
    .then((context) => context.resume())
    .catch((error) => showMicProblem(micProblemText(error)));
  return true;
}

// --- connection --------------------------------------------------------------------------
const CONNECTION_LABELS = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline",
};

function setConnection(name, label = CONNECTION_LABELS[name]) {
  ui.connection.dataset.state = name;
  ui.connection.querySelector(".connection-label").textContent = label;
}

function connect() {
  clearConnectionTimers(state);
  if (state.socket) return;
  setConnection(state.attempt === 0 ? "connecting" : "reconnecting");
  const socket = new WebSocket(socketUrl(config.wsPath));
  socket.binaryType = "arraybuffer";
  state.socket = socket;
  socket.addEventListener("open", () => {
    if (socket !== state.socket) return;
    state.connected = true;
    state.attempt = 0;
    // "Connected" waits for `session`: the voice upstream is open then.
    setConnection("connecting", "Starting voice…");
    startHeartbeat(state, sendFrame, dropSocket);
    updateControls();
  });
  socket.addEventListener("message", (event) => {
    if (socket === state.socket) handleFrame(event.data);
  });
  socket.addEventListener("close", (event) => {
    if (socket === state.socket) onClosed(event.code);
  });
}

/** Forget the current socket at once (a dead one may take long to report its close). */
function dropSocket() {
  const socket = state.socket;
  if (!socket) return;
  state.socket = null;
  socket.close();
  onClosed(1006);
}

function onClosed(code) {
  state.socket = null;
  state.connected = false;
  clearConnectionTimers(state);
  // What was streaming or playing belonged to the session that just ended.
  flushPlayback();
  if (state.responding) finishAssistant(state.turn, "cancelled");
  state.responding = false;
  state.turn = null;
  state.sessionId = null;
  state.speechHeard = false;
  showVad();
  updateControls();
  if (state.leaving) return;
  if (code === CLOSE_UNAUTHENTICATED) {
    setConnection("offline", "Logged out");
    const next = encodeURIComponent(location.pathname);
    location.assign(`${ui.layout.dataset.loginUrl}?next=${next}`);
    return;
  }
  if (state.fatal) return; // the Reconnect button starts a new session
  if (code === CLOSE_TOO_MANY_FRAMES) showNotice("Too many frames at once; reconnecting in a moment.");
  scheduleReconnect(state, setConnection, connect);
}

function reconnectNow() {
  if (state.socket || state.fatal) return;
  state.attempt = Math.min(state.attempt, 1);
  connect();
}

// --- wiring ------------------------------------------------------------------------------
ui.mic.addEventListener("click", () => {
  if (state.micOn) stopMic();
  else startMic();
});

ui.stop.addEventListener("click", stopAnswer);

ui.reconnect.addEventListener("click", () => {
  state.fatal = false;
  ui.fatal.hidden = true;
  state.attempt = 0;
  connect();
});

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (sendText(ui.input.value)) {
    ui.input.value = "";
    updateControls();
  }
});
ui.input.addEventListener("input", updateControls);

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && (state.responding || state.playing)) stopAnswer();
});

window.addEventListener("beforeunload", () => {
  state.leaving = true;
});
window.addEventListener("pageshow", (event) => {
  if (!event.persisted) return;
  state.leaving = false; // back from the back/forward cache
  if (!state.socket) reconnectNow();
});
window.addEventListener("online", reconnectNow);
window.addEventListener("offline", () => {
  if (!state.connected && !state.fatal) setConnection("offline");
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && !state.socket) reconnectNow();
});

renderMic();
updateControls();
connect();
