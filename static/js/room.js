// The room page: one WebSocket to /ws/room/<slug>/, several people and the AI.
//
// Protocol reference: docs/protocol.md (events built by rooms/events.py).
// Rules this file keeps (the same as chat.js):
// - the server's copy of a message is the truth: ours shows as "sending"
//   until its `user_message` comes back, and `room_state` (on every connect)
//   is merged into what the page shows;
// - streamed AI tokens are plain text (a Text node), buffered and written once
//   per animation frame; only the server's sanitized `html` from
//   `ai_complete`/`ai_cancelled` is ever assigned with innerHTML;
// - an AI reply outlives the socket. On every connect the server replays the
//   turn under way from its first token (its first frame holds the backlog),
//   so that frame replaces the bubble's text; a reply that ended while we were
//   away and is not in `room_state` is asked for with `resume` from the
//   highest token index we have.

import { refreshRelativeTimes, relativeTime } from "./app.js";
import {
  CLOSE_TOO_MANY_FRAMES,
  CLOSE_UNAUTHENTICATED,
  CLOSE_FORBIDDEN,
  clearConnectionTimers,
  pongReceived,
  scheduleReconnect,
  socketUrl,
  startHeartbeat,
} from "./connection.js";
import { el, enhanceCodeBlocks, latencyBadge, thinkingIndicator } from "./messages.js";

const config = JSON.parse(document.getElementById("room-config").textContent);

const STICK_THRESHOLD_PX = 64;
const NOTICE_MS = 6000;
// How long "Ana is typing…" stays after her last `user_typing`.
const TYPING_SHOWN_MS = 4000;
// rooms/templatetags/rooms.py picks the same colour classes.
const AVATAR_HUES = 8;
// Refusals of a `message` frame: the oldest message still "sending" was not stored.
const MESSAGE_REFUSALS = new Set(["empty_content", "too_large", "rate_limited", "invalid_event", "internal_error"]);

const $ = (id) => document.getElementById(id);
const ui = {
  layout: $("room-layout"),
  connection: $("connection-state"),
  messages: $("messages"),
  inner: $("messages-inner"),
  jump: $("jump-button"),
  typing: $("typing"),
  notice: $("notice"),
  closed: $("room-closed"),
  closedText: $("room-closed-text"),
  composer: $("composer"),
  input: $("composer-input"),
  send: $("send-button"),
  charCount: $("char-count"),
  people: $("people"),
  peopleList: $("participant-list"),
  peopleCount: $("participant-count"),
  peopleToggle: $("people-toggle"),
  peopleToggleCount: $("people-toggle-count"),
  peopleClose: $("people-close"),
  peopleBackdrop: $("people-backdrop"),
};

const state = {
  socket: null,
  connected: false,
  attempt: 0,
  timers: { retry: 0, countdown: 0, ping: 0, pong: 0, notice: 0, typing: 0 },
  reply: null, // the AI reply streaming now (see trackReply)
  sending: [], // {text, article, socket}: our messages whose `user_message` has not come back
  participants: new Map(), // user id -> username, from room_state and joined/left
  typists: new Map(), // user id -> {name, until}
  lastTypingSentAt: 0,
  stickToBottom: true,
  shut: false, // closed for good (removed, or not a member): no reconnecting
  leaving: false, // the page is navigating away (a link, a form such as Log out)
};

// --- messages ------------------------------------------------------------------------
function avatarHue(userId) {
  return `avatar-hue-${(Number(userId) || 0) % AVATAR_HUES}`;
}

function triggersAi(text) {
  return config.aiMode === "every" || text.toLowerCase().includes(config.mention);
}

function relativeTimeNode(iso) {
  const date = new Date(iso);
  return el("time", { datetime: iso, "data-relative": true, title: date.toLocaleString(), text: relativeTime(date) });
}

/** The same structure as templates/rooms/_message.html. */
function buildMessage({ id = null, role, user = null, status, createdAt, body, triggers = null }) {
  const mine = role === "user" && user !== null && user.id === config.userId;
  const side = role === "user" ? (mine ? " message-mine" : " message-other") : "";
  const article = el("article", {
    class: `message message-${role}${side}`,
    "data-testid": "message",
    "data-role": role,
    "data-status": status,
    "data-message-id": id ?? "",
    "data-author-id": user?.id ?? "",
    "data-triggers-ai": role === "user" ? String(triggers) : null,
  });
  const name = role === "assistant" ? "AI" : mine ? "You" : user?.username || "Deleted user";
  const avatar =
    role === "assistant"
      ? el("div", { class: "avatar", "aria-hidden": "true", text: "AI" })
      : el("div", { class: `avatar ${avatarHue(user?.id)}`, "aria-hidden": "true", text: (user?.username || "?")[0].toUpperCase() });
  const meta = el(
    "div",
    { class: "message-meta" },
    el("span", { class: "message-author", "data-testid": "message-author", text: name }),
    relativeTimeNode(createdAt ?? new Date().toISOString()),
  );
  const content = el("div", { class: "message-content" }, meta, body);
  if (role === "assistant") content.append(el("div", { class: "message-footer" }));
  article.append(avatar, content);
  return article;
}

function userBody(text) {
  return el("div", { class: "message-body", "data-testid": "message-body", text });
}

/** A stored message as `room_state` and `user_message` carry it. */
function buildStoredMessage(m) {
  if (m.role === "user") {
    return buildMessage({
      id: m.id,
      role: "user",
      user: m.user,
      status: m.status,
      createdAt: m.created_at,
      body: userBody(m.content),
      triggers: triggersAi(m.content),
    });
  }
  const body = el("div", { class: "message-body prose", "data-testid": "message-body" });
  const article = buildMessage({ id: m.id, role: "assistant", status: m.status, createdAt: m.created_at, body });
  if (m.status === "streaming") showPartial(body, m.content);
  else showEnded(article, { ...m, code: m.error_code, message: null }, m.status);
  return article;
}

/** A streaming reply's text saved so far (the replay replaces it), or the thinking dots. */
function showPartial(body, text) {
  body.replaceChildren(text ? text : thinkingIndicator("The AI is writing…"));
  body.classList.toggle("is-plain", Boolean(text));
}

function buildStreamingReply(messageId) {
  const body = el("div", { class: "message-body prose", "data-testid": "message-body" }, thinkingIndicator("The AI is thinking…"));
  return buildMessage({ id: messageId, role: "assistant", status: "streaming", createdAt: new Date().toISOString(), body });
}

function allMessages() {
  return [...ui.inner.querySelectorAll(".message[data-message-id]:not([data-message-id=''])")];
}

function findMessage(messageId) {
  return ui.inner.querySelector(`.message[data-message-id="${CSS.escape(String(messageId))}"]`);
}

/** Put a stored message in its place: messages are shown in id order. */
function placeMessage(article) {
  $("empty-state")?.remove();
  const id = Number(article.dataset.messageId);
  const later = allMessages().find((node) => Number(node.dataset.messageId) > id);
  if (later) later.before(article);
  else {
    // Our own messages still "sending" stay last, below every stored one.
    const firstSending = state.sending[0]?.article;
    if (firstSending?.isConnected) firstSending.before(article);
    else ui.inner.append(article);
  }
  scrollToBottomIfStuck();
}

function errorBox(message) {
  return el(
    "div",
    { class: "message-error", "data-testid": "message-error", role: "alert" },
    el("span", { class: "message-error-text", text: message || "The reply failed; the partial answer is kept." }),
  );
}

/** Show how an AI message ended: its html (or partial text), marker and badge. */
function showEnded(article, event, status) {
  const body = article.querySelector(".message-body");
  const footer = article.querySelector(".message-footer");
  footer.replaceChildren();
  body.classList.remove("is-plain");
  if (status === "error") {
    body.classList.add("is-plain");
    body.textContent = typeof event.content === "string" ? event.content : body.textContent;
    footer.append(errorBox(event.message));
    if (event.code) article.dataset.errorCode = event.code;
  } else {
    body.innerHTML = event.html ?? ""; // sanitized on the server (realtime/rendering.py)
    enhanceCodeBlocks(body);
    if (status === "cancelled") {
      footer.append(el("span", { class: "marker marker-stopped", "data-testid": "message-stopped", text: "stopped" }));
    }
  }
  const badge = latencyBadge(event.metrics);
  if (badge) footer.append(badge);
  article.dataset.status = status;
  article.classList.remove("is-generating");
  article.removeAttribute("aria-busy");
}

// --- the AI reply being streamed --------------------------------------------------------
function trackReply(article, messageId) {
  const previous = state.reply;
  if (previous && previous.messageId !== messageId) {
    untrackReply();
    // A new turn started before the previous one's end reached us (a socket
    // follows one turn at a time): the server has that end; fetch it.
    if (previous.article.dataset.status === "streaming") settleFromServer(previous.messageId, messageId);
  }
  state.reply = {
    messageId,
    article,
    body: article.querySelector(".message-body"),
    lastIndex: -1,
    buffer: "",
    textNode: null,
    frame: 0,
    replay: true, // the first frame holds every token so far: it replaces the text shown
    resuming: false,
    stopRequested: false,
  };
  article.dataset.status = "streaming";
  article.setAttribute("aria-busy", "true");
  updateStop();
  return state.reply;
}

function untrackReply() {
  const reply = state.reply;
  if (!reply) return;
  flush(reply);
  reply.article.querySelector("[data-stop]")?.remove();
  state.reply = null;
}

/** The reply of `messageId`: the one tracked, or a new bubble (a turn we join mid-way). */
function replyFor(messageId) {
  if (state.reply?.messageId === messageId) return state.reply;
  let article = findMessage(messageId);
  if (article && article.dataset.status !== "streaming") return null; // already ended here
  if (!article) {
    article = buildStreamingReply(messageId);
    placeMessage(article);
  }
  return trackReply(article, messageId);
}

function scheduleFlush(reply) {
  if (!reply.frame) reply.frame = requestAnimationFrame(() => flush(reply));
}

function flush(reply) {
  if (reply.frame) cancelAnimationFrame(reply.frame);
  reply.frame = 0;
  if (!reply.buffer) return;
  if (!reply.textNode || reply.replay) {
    reply.textNode = document.createTextNode("");
    reply.body.replaceChildren(reply.textNode);
    reply.body.classList.add("is-plain");
    reply.article.classList.add("is-generating");
    reply.replay = false;
  }
  reply.textNode.appendData(reply.buffer);
  reply.buffer = "";
  scrollToBottomIfStuck();
}

/** End an AI reply with its terminal event: ai_complete, ai_cancelled or a reply error. */
function finishReply(event, status) {
  const reply = state.reply?.messageId === event.message_id ? state.reply : null;
  const article = reply?.article ?? findMessage(event.message_id);
  if (!article) return;
  if (reply) {
    flush(reply);
    untrackReply();
  }
  showEnded(article, event, status);
  scrollToBottomIfStuck();
}

/**
 * Whether this person may stop the reply in `article`: the room's owner may
 * stop any; others one that answers a message of theirs, i.e. one they sent
 * (that calls the AI) after the previous AI reply started.
 */
function mayStop(article) {
  if (config.isOwner) return true;
  for (let node = article.previousElementSibling; node; node = node.previousElementSibling) {
    if (!node.classList.contains("message")) continue;
    if (node.dataset.role === "assistant") return false;
    if (Number(node.dataset.authorId) === config.userId && node.dataset.triggersAi === "true") return true;
  }
  return false;
}

/** The Stop button of the streaming reply: there only for those who may use it. */
function updateStop() {
  const reply = state.reply;
  if (!reply) return;
  const footer = reply.article.querySelector(".message-footer");
  let button = footer.querySelector("[data-stop]");
  if (!mayStop(reply.article)) {
    button?.remove();
    return;
  }
  if (!button) {
    button = el(
      "button",
      { type: "button", class: "button button-small button-stop", "data-stop": true, "data-testid": "stop-button" },
      el("span", { class: "stop-icon", "aria-hidden": "true" }),
      el("span", { class: "stop-label", text: "Stop" }),
    );
    footer.prepend(button);
  }
  button.disabled = reply.stopRequested || !state.connected;
  button.querySelector(".stop-label").textContent = reply.stopRequested ? "Stopping…" : "Stop";
}

function requestStop() {
  const reply = state.reply;
  if (!reply || reply.stopRequested) return;
  if (sendFrame({ type: "cancel", message_id: reply.messageId })) reply.stopRequested = true;
  updateStop();
}

/** A new socket replays the turn from its first token: the next frame replaces the text. */
function replayFromStart(reply) {
  if (reply.frame) cancelAnimationFrame(reply.frame);
  reply.frame = 0;
  reply.buffer = "";
  reply.lastIndex = -1;
  reply.replay = true;
  reply.stopRequested = false; // a cancel sent on the old socket may never have arrived
  updateStop();
}

/** Ask for what we missed of a reply the server does not replay by itself. */
function resume(reply) {
  reply.resuming = true;
  reply.stopRequested = false;
  sendFrame({ type: "resume", message_id: reply.messageId, after: reply.lastIndex });
  updateStop();
}

/** Show how a reply ended as the server stored it, from the page of messages before `nextId`. */
async function settleFromServer(messageId, nextId) {
  try {
    const url = `${config.olderUrl}?before=${encodeURIComponent(nextId)}`;
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) return;
    const fragment = document.createRange().createContextualFragment((await response.json()).html);
    const stored = fragment.querySelector(`.message[data-message-id="${CSS.escape(String(messageId))}"]`);
    const shown = findMessage(messageId);
    if (!stored || !shown || stored.dataset.status === "streaming" || shown.dataset.status !== "streaming") return;
    if (state.reply?.messageId === messageId) return; // followed again meanwhile
    enhanceCodeBlocks(stored);
    refreshRelativeTimes(fragment);
    shown.replaceWith(stored);
    scrollToBottomIfStuck();
  } catch {
    // It stays as streamed; a reload shows its end.
  }
}

// --- room_state: what the server holds, merged into what the page shows ---------------
/** Show what the server has and the page lacks; returns the ids it added. */
function mergeConversation(conversation, hasMore) {
  const shown = allMessages();
  const newestShown = shown.length ? Number(shown[shown.length - 1].dataset.messageId) : null;
  const oldestSent = conversation.length ? conversation[0].id : null;
  // Away so long that more than a page came in: what the page shows and the
  // newest page do not meet, so the page starts again from the newest page.
  if (newestShown !== null && oldestSent !== null && hasMore && newestShown < oldestSent) {
    untrackReply();
    for (const node of shown) node.remove();
    setOlderMarker(oldestSent);
  } else if (newestShown === null && hasMore && oldestSent !== null && !$("older-messages")) {
    setOlderMarker(oldestSent);
  }
  const added = new Set();
  for (const m of conversation) {
    const article = findMessage(m.id);
    if (!article) {
      placeMessage(buildStoredMessage(m));
      added.add(m.id);
    } else if (m.role === "assistant" && m.status !== "streaming" && article.dataset.status === "streaming") {
      // It ended while we were away.
      if (state.reply?.messageId === m.id) untrackReply();
      showEnded(article, { ...m, code: m.error_code, message: null }, m.status);
    }
  }
  return added;
}

/** Our messages sent on a socket that dropped: stored if room_state brought them, else not sent. */
function mergeSending(conversation, added) {
  const ours = conversation.filter((m) => added.has(m.id) && m.user?.id === config.userId);
  for (const item of [...state.sending]) {
    if (item.socket === state.socket) continue;
    const match = ours.findIndex((m) => m.content === item.text);
    const stored = match >= 0;
    if (stored) ours.splice(match, 1);
    state.sending.splice(state.sending.indexOf(item), 1);
    if (stored) item.article.remove();
    else failSending(item, "the connection dropped before the server had it.");
  }
}

// --- server events -----------------------------------------------------------------
const handlers = {
  room_state(event) {
    const added = mergeConversation(event.conversation, event.has_more);
    mergeSending(event.conversation, added);
    setParticipants(event.participants);
    const turn = event.ai_turn;
    const tracked = state.reply;
    if (turn) {
      // The server replays it to this socket from its first token.
      if (tracked?.messageId === turn.message_id) replayFromStart(tracked);
      else replyFor(turn.message_id);
    } else if (tracked && tracked.article.dataset.status === "streaming") {
      // It ended while we were away, beyond the page the server sent: ask for its end.
      resume(tracked);
    }
    updateControls();
  },

  participant_joined(event) {
    state.participants.set(event.user.id, event.user.username);
    renderParticipants(event.count);
  },

  participant_left(event) {
    state.participants.delete(event.user.id);
    state.typists.delete(event.user.id);
    renderParticipants(event.count);
    renderTyping();
  },

  user_typing(event) {
    if (event.user.id === config.userId) return;
    state.typists.set(event.user.id, { name: event.user.username, until: Date.now() + TYPING_SHOWN_MS });
    renderTyping();
  },

  user_message(event) {
    state.typists.delete(event.user?.id);
    renderTyping();
    if (findMessage(event.id)) return; // already here (room_state raced it)
    if (event.user?.id === config.userId) {
      const index = state.sending.findIndex((item) => item.text === event.content);
      if (index >= 0) state.sending.splice(index, 1)[0].article.remove();
    }
    placeMessage(buildStoredMessage(event));
    updateStop();
  },

  ai_typing(event) {
    if (event.status) replyFor(event.message_id);
  },

  ai_token(event) {
    const reply = replyFor(event.message_id);
    if (!reply) return;
    reply.resuming = false;
    // Resume may replay tokens we already have: the index says which.
    if (event.index <= reply.lastIndex) return;
    reply.lastIndex = event.index;
    reply.buffer += event.content;
    scheduleFlush(reply);
  },

  ai_complete(event) {
    finishReply(event, "complete");
  },

  ai_cancelled(event) {
    finishReply(event, "cancelled");
  },

  error(event) {
    if (event.message_id !== undefined && event.message_id !== null) {
      finishReply(event, "error");
      return;
    }
    // One frame refused; the connection carries on.
    if (MESSAGE_REFUSALS.has(event.code) && state.sending.length) {
      failSending(state.sending.shift(), event.message);
    } else if (state.reply?.resuming && event.code === "not_found") {
      const { messageId } = state.reply;
      finishReply({ message_id: messageId, message: event.message, code: event.code }, "error");
    } else if (state.reply?.stopRequested) {
      state.reply.stopRequested = false; // not_streaming or forbidden: the cancel did nothing
      updateStop();
      if (event.code === "not_streaming") return; // it just ended by itself
    }
    showNotice(event.message);
  },

  pong() {
    pongReceived(state);
  },
};

function handleFrame(data) {
  let event;
  try {
    event = JSON.parse(data);
  } catch {
    return;
  }
  handlers[event.type]?.(event);
}

// --- people -------------------------------------------------------------------------------
function setParticipants(participants) {
  state.participants = new Map(participants.map((p) => [p.id, p.username]));
  renderParticipants(participants.length);
}

function renderParticipants(count) {
  const people = [...state.participants].sort(([idA, a], [idB, b]) => {
    if (idA === config.userId) return -1; // yourself first
    if (idB === config.userId) return 1;
    return a.localeCompare(b);
  });
  ui.peopleList.replaceChildren(
    ...people.map(([id, username]) => {
      const tags = [];
      if (id === config.userId) tags.push("you");
      if (id === config.ownerId) tags.push("owner");
      return el(
        "li",
        { class: "person", "data-testid": "participant", "data-user-id": id },
        el("span", { class: `avatar avatar-small ${avatarHue(id)}`, "aria-hidden": "true", text: (username || "?")[0].toUpperCase() }),
        el("span", { class: "person-name", "data-testid": "participant-name", text: username }),
        ...tags.map((tag) => el("span", { class: "pill", text: tag })),
      );
    }),
  );
  const shown = String(count ?? people.length);
  ui.peopleCount.textContent = shown;
  ui.peopleToggleCount.textContent = shown;
}

function typingSentence(names) {
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  if (names.length === 3) return `${names[0]}, ${names[1]} and ${names[2]} are typing…`;
  return "Several people are typing…";
}

function renderTyping() {
  clearTimeout(state.timers.typing);
  const now = Date.now();
  for (const [id, typist] of state.typists) if (typist.until <= now) state.typists.delete(id);
  const typists = [...state.typists.values()];
  ui.typing.textContent = typists.length ? typingSentence(typists.map((t) => t.name)) : "";
  if (typists.length) {
    const next = Math.min(...typists.map((t) => t.until));
    state.timers.typing = setTimeout(renderTyping, next - now + 20);
  }
}

function setPeopleOpen(open) {
  ui.layout.classList.toggle("people-open", open);
  ui.peopleToggle.setAttribute("aria-expanded", String(open));
  ui.peopleBackdrop.hidden = !open;
  if (open) ui.peopleClose.focus();
}

// --- sending ---------------------------------------------------------------------------
function sendFrame(frame) {
  if (!state.socket || state.socket.readyState !== WebSocket.OPEN) return false;
  state.socket.send(JSON.stringify(frame));
  return true;
}

function sendMessage(rawText) {
  const text = rawText.trim();
  if (!text || !state.connected) return false;
  if (text.length > config.maxMessageChars) {
    showNotice(`Message is ${text.length} characters; the limit is ${config.maxMessageChars}.`);
    return false;
  }
  if (!sendFrame({ type: "message", content: text })) return false;
  hideNotice();
  const me = { id: config.userId, username: config.username };
  const article = buildMessage({ role: "user", user: me, status: "sending", body: userBody(text), triggers: triggersAi(text) });
  state.stickToBottom = true;
  $("empty-state")?.remove();
  ui.inner.append(article);
  scrollToBottom();
  state.sending.push({ text, article, socket: state.socket });
  state.lastTypingSentAt = 0; // the message ends this bout of typing
  return true;
}

/** A message of ours the server did not store: say so, and give its text back. */
function failSending(item, reason) {
  if (!ui.input.value.trim()) {
    item.article.remove();
    ui.input.value = item.text;
    autosize();
  } else {
    item.article.dataset.status = "failed";
    item.article.querySelector(".message-content").append(el("p", { class: "message-note", text: `Not sent: ${reason}` }));
  }
}

function noteTyping() {
  if (!ui.input.value.trim()) return;
  const now = Date.now();
  if (now - state.lastTypingSentAt < config.typingIntervalMs) return;
  if (sendFrame({ type: "typing" })) state.lastTypingSentAt = now;
}

// --- controls ----------------------------------------------------------------------------
function updateControls() {
  ui.send.disabled = !state.connected || !ui.input.value.trim();
  ui.input.disabled = state.shut;
  updateStop();
}

function showNotice(text) {
  ui.notice.textContent = text;
  ui.notice.hidden = false;
  clearTimeout(state.timers.notice);
  state.timers.notice = setTimeout(hideNotice, NOTICE_MS);
}

function hideNotice() {
  ui.notice.hidden = true;
  ui.notice.textContent = "";
}

function autosize() {
  ui.input.style.height = "auto";
  ui.input.style.height = `${Math.min(ui.input.scrollHeight, 240)}px`;
  const length = ui.input.value.length;
  const near = length > config.maxMessageChars * 0.8;
  ui.charCount.hidden = !near;
  if (near) ui.charCount.textContent = `${length.toLocaleString()} / ${config.maxMessageChars.toLocaleString()}`;
  ui.send.disabled = !state.connected || !ui.input.value.trim();
}

// --- scrolling ---------------------------------------------------------------------------
function distanceFromBottom() {
  const box = ui.messages;
  return box.scrollHeight - box.scrollTop - box.clientHeight;
}

function scrollToBottom() {
  ui.messages.scrollTop = ui.messages.scrollHeight;
  state.stickToBottom = true;
  ui.jump.hidden = true;
}

function scrollToBottomIfStuck() {
  if (state.stickToBottom) scrollToBottom();
  else ui.jump.hidden = distanceFromBottom() < STICK_THRESHOLD_PX;
}

// --- older messages ---------------------------------------------------------------------
// The page holds the newest messages; earlier pages load as the reader nears
// the top. The reader's place is kept: the content above them grows, and the
// scroll offset grows by exactly as much, so nothing jumps.
const OLDER_MESSAGES_MARGIN_PX = 400;
const olderMessages = { loading: false, observer: null };

async function loadOlderMessages() {
  const marker = $("older-messages");
  if (!marker || olderMessages.loading) return;
  olderMessages.loading = true;
  try {
    const url = `${marker.dataset.url}?before=${encodeURIComponent(marker.dataset.before)}`;
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const page = await response.json();
    const box = ui.messages;
    const fromBottom = box.scrollHeight - box.scrollTop;
    const fragment = document.createRange().createContextualFragment(page.html);
    // A message the socket already brought (the pages overlap after a resync) stays once.
    for (const article of fragment.querySelectorAll(".message[data-message-id]")) {
      if (findMessage(article.dataset.messageId)) article.remove();
    }
    enhanceCodeBlocks(fragment);
    refreshRelativeTimes(fragment);
    marker.after(fragment);
    box.scrollTop = box.scrollHeight - fromBottom;
    if (page.has_more) {
      marker.dataset.before = page.oldest_id;
    } else {
      olderMessages.observer?.disconnect();
      marker.remove();
    }
  } catch {
    marker.querySelector(".older-messages-label").textContent = "Could not load earlier messages. Scroll up to try again.";
    return;
  } finally {
    olderMessages.loading = false;
  }
  // A short page leaves the marker in view, which the observer does not report again.
  if ($("older-messages") && ui.messages.scrollTop < OLDER_MESSAGES_MARGIN_PX) loadOlderMessages();
}

function setOlderMarker(before) {
  let marker = $("older-messages");
  if (!marker) {
    marker = el(
      "div",
      { class: "older-messages", id: "older-messages", "data-testid": "older-messages", "data-url": config.olderUrl },
      el("span", { class: "older-messages-label", text: "Loading earlier messages…" }),
    );
    ui.inner.prepend(marker);
  }
  marker.dataset.before = before;
  watchForOlderMessages();
}

function watchForOlderMessages() {
  const marker = $("older-messages");
  if (!marker) return;
  olderMessages.observer?.disconnect();
  olderMessages.observer = new IntersectionObserver(
    (entries) => {
      if (entries.some((entry) => entry.isIntersecting)) loadOlderMessages();
    },
    { root: ui.messages, rootMargin: `${OLDER_MESSAGES_MARGIN_PX}px 0px 0px 0px` },
  );
  olderMessages.observer.observe(marker);
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
  if (state.socket || state.shut) return;
  setConnection(state.attempt === 0 ? "connecting" : "reconnecting");
  const socket = new WebSocket(socketUrl(config.wsPath));
  state.socket = socket;
  socket.addEventListener("open", () => {
    if (socket !== state.socket) return;
    state.connected = true;
    state.attempt = 0;
    setConnection("connected");
    startHeartbeat(state, sendFrame, dropSocket);
    updateControls(); // room_state follows; it says what to resume
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

/** Closed for good: say why, and stop sending and reconnecting. */
function shutRoom(text) {
  state.shut = true;
  setConnection("offline", "Disconnected");
  ui.closedText.textContent = text;
  ui.closed.hidden = false;
  ui.composer.hidden = true;
  untrackReply();
  state.participants.clear();
  state.typists.clear();
  renderParticipants(0);
  renderTyping();
}

function onClosed(code) {
  state.socket = null;
  state.connected = false;
  clearConnectionTimers(state);
  // Logging out closes this session's sockets (4401) while the page is already
  // on its way out: the navigation the person chose wins.
  if (state.leaving) return;
  if (code === CLOSE_UNAUTHENTICATED) {
    setConnection("offline", "Logged out");
    const next = encodeURIComponent(location.pathname);
    location.assign(`${ui.layout.dataset.loginUrl}?next=${next}`);
    return;
  }
  if (code === CLOSE_FORBIDDEN) {
    shutRoom("You are not a member of this room (any more). Ask its owner for an invite link.");
    return;
  }
  if (code === CLOSE_TOO_MANY_FRAMES) showNotice("Too many messages at once; reconnecting in a moment.");
  updateControls();
  scheduleReconnect(state, setConnection, connect);
}

function reconnectNow() {
  if (state.socket || state.shut) return;
  state.attempt = Math.min(state.attempt, 1);
  connect();
}

// --- wiring ------------------------------------------------------------------------------
ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  if (sendMessage(ui.input.value)) {
    ui.input.value = "";
    autosize();
  }
});

ui.input.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
  event.preventDefault();
  ui.composer.requestSubmit();
});
ui.input.addEventListener("input", () => {
  autosize();
  noteTyping();
});

ui.inner.addEventListener("click", (event) => {
  if (event.target.closest("[data-stop]")) requestStop();
});

ui.messages.addEventListener(
  "scroll",
  () => {
    state.stickToBottom = distanceFromBottom() < STICK_THRESHOLD_PX;
    if (state.stickToBottom) ui.jump.hidden = true;
  },
  { passive: true },
);
ui.jump.addEventListener("click", () => {
  scrollToBottom();
  ui.input.focus();
});

ui.peopleToggle.addEventListener("click", () => setPeopleOpen(!ui.layout.classList.contains("people-open")));
ui.peopleBackdrop.addEventListener("click", () => setPeopleOpen(false));
ui.peopleClose.addEventListener("click", () => {
  setPeopleOpen(false);
  ui.peopleToggle.focus();
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && ui.layout.classList.contains("people-open")) {
    setPeopleOpen(false);
    ui.peopleToggle.focus();
  }
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
  if (!state.connected && !state.shut) setConnection("offline");
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && !state.socket) reconnectNow();
});

// Stored replies: code blocks get their Copy buttons too.
enhanceCodeBlocks(ui.inner);

// A reply still streaming when the page loaded shows the text saved so far
// until the socket's replay of it arrives.
const streaming = [...ui.inner.querySelectorAll('.message[data-role="assistant"][data-status="streaming"]')].pop();
if (streaming) {
  showPartial(streaming.querySelector(".message-body"), streaming.querySelector(".message-body").textContent.trim());
  trackReply(streaming, Number(streaming.dataset.messageId));
}

scrollToBottom();
watchForOlderMessages();
updateControls();
autosize();
connect();
