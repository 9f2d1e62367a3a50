// The chat page: one WebSocket to /ws/chat/, replies streamed token by token.
//
// Protocol reference: docs/protocol.md (built by chat/events.py).
// Rules this file keeps:
// - streamed tokens are drawn as Markdown blocks built from text nodes
//   (markdown-stream.js), so the server's rendering that replaces them at the
//   end takes the same room; only the server's sanitized `html` from
//   `complete`/`cancelled` is ever assigned with innerHTML;
// - token text is buffered and drawn once per animation frame;
// - a reply outlives the socket: after a reconnect (or a reload) we `resume`
//   from the last token index we have and keep filling the same bubble;
// - every tab of the person is one view of the same conversations: a message
//   sent, a reply retried, a rename or a delete elsewhere shows here too, and a
//   reply started elsewhere in the conversation shown here is followed live
//   (`resume`), with a working Stop.

import {
  CLOSE_UNAUTHENTICATED,
  clearConnectionTimers,
  pongReceived,
  scheduleReconnect,
  socketUrl,
  startHeartbeat,
} from "./connection.js";
import { el, enhanceCodeBlocks, latencyBadge, thinkingIndicator } from "./messages.js";
import { StreamedMarkdown } from "./markdown-stream.js";

const config = JSON.parse(document.getElementById("chat-config").textContent);

const STICK_THRESHOLD_PX = 64;
const NOTICE_MS = 6000;
const TITLE_CHARS = 60;
const STREAMING_NOTE = "A reply is streaming — press Escape or Stop to stop it.";

const $ = (id) => document.getElementById(id);
const ui = {
  layout: $("chat-layout"),
  sidebar: $("sidebar"),
  backdrop: $("sidebar-backdrop"),
  toggle: $("sidebar-toggle"),
  sidebarClose: $("sidebar-close"),
  list: $("conversation-list"),
  title: $("chat-title"),
  menu: $("conversation-menu"),
  renameForm: $("rename-form"),
  renameInput: $("rename-title"),
  deleteForm: $("delete-form"),
  connection: $("connection-state"),
  messages: $("messages"),
  inner: $("messages-inner"),
  jump: $("jump-button"),
  notice: $("notice"),
  composer: $("composer"),
  input: $("composer-input"),
  send: $("send-button"),
  stop: $("stop-button"),
  charCount: $("char-count"),
};

const state = {
  socket: null,
  connected: false,
  attempt: 0,
  timers: { retry: 0, countdown: 0, ping: 0, pong: 0, notice: 0 },
  conversationId: config.conversationId,
  pending: null, // {text, userEl, replaces, stopRequested}: sent, waiting for its `ack`
  waiting: null, // {messageId}: a reply started elsewhere while we were busy; followed next
  reply: null, // the assistant reply this socket follows (see trackReply)
  resuming: false,
  stickToBottom: true,
  leaving: false, // the page is navigating away (a link, a form such as Log out)
};

// --- small helpers -------------------------------------------------------------------
/** Fill a `{% url ... 0 %}` path from the template with a real id. */
function urlFor(template, id) {
  return template.replace(/\/0\/(?!.*\/0\/)/, `/${id}/`);
}

function titleFrom(text) {
  const line = text.trim().split("\n")[0] || "";
  return line.length > TITLE_CHARS ? `${line.slice(0, TITLE_CHARS)}…` : line;
}

// --- messages ------------------------------------------------------------------------
function userInitial() {
  const name = document.querySelector("[data-testid=username]")?.textContent.trim() || "Y";
  return name[0].toUpperCase();
}

/** "‹ 2/3 ›" for a message with versions (templates/chat/_versions.html builds the same). */
function versionsNav(versions, messageId) {
  const index = versions.indexOf(messageId);
  const step = (offset, label, text, testid) =>
    el("button", {
      type: "button",
      class: "message-action",
      "data-switch-to": versions[index + offset] ?? "",
      "data-testid": testid,
      "aria-label": label,
      text,
      ...(versions[index + offset] === undefined ? { disabled: "" } : {}),
    });
  return el(
    "span",
    { class: "message-versions", "data-testid": "message-versions", role: "group", "aria-label": "Versions" },
    step(-1, "Previous version", "‹", "previous-version"),
    el("span", { class: "version-label", "data-testid": "version-label", text: `${index + 1}/${versions.length}` }),
    step(1, "Next version", "›", "next-version"),
  );
}

/** A message's versions, and Edit (a question) or Regenerate (an answer): templates/chat/_branch_actions.html. */
function branchActions(role, versions, messageId) {
  const actions = el("span", { class: "message-branch", "data-testid": "message-branch" });
  if (versions && versions.length > 1) actions.append(versionsNav(versions, messageId));
  actions.append(
    role === "user"
      ? el("button", { type: "button", class: "message-action", "data-edit": "", "data-testid": "edit-button", text: "Edit" })
      : el("button", { type: "button", class: "message-action", "data-regenerate": "", "data-testid": "regenerate-button", text: "Regenerate" }),
  );
  return actions;
}

function versionsOf(article) {
  return article.dataset.versions?.split(",").map(Number) ?? null;
}

function setVersions(article, versions) {
  const messageId = Number(article.dataset.messageId);
  if (versions && versions.length > 1) article.dataset.versions = versions.join(",");
  else delete article.dataset.versions;
  article.querySelector(".message-branch")?.remove();
  // In the message's actions bar (message-actions.js adds it to a live message just after).
  const bar = article.querySelector(".message-actions") ?? article.querySelector(".message-content");
  bar.append(branchActions(article.dataset.role, versions, messageId));
}

/** Remove `article` and everything shown after it: the branch it starts is no longer shown. */
function removeFrom(article) {
  while (article.nextElementSibling) article.nextElementSibling.remove();
  article.remove();
}

function buildMessage({ role, status, messageId = null, body }) {
  const article = el("article", {
    class: `message message-${role}`,
    "data-testid": "message",
    "data-role": role,
    "data-status": status,
    "data-message-id": messageId ?? "",
  });
  const content = el(
    "div",
    { class: "message-content" },
    el("h3", { class: "visually-hidden", text: role === "user" ? "You" : "Assistant" }),
    body,
  );
  if (role === "assistant") content.append(el("div", { class: "message-footer" }));
  article.append(el("div", { class: "avatar", "aria-hidden": "true", text: role === "user" ? userInitial() : "AI" }), content);
  return article;
}

function buildUserMessage(text, { messageId = null, status = "sending" } = {}) {
  const body = el("div", { class: "message-body", "data-testid": "message-body", text });
  return buildMessage({ role: "user", status, messageId, body });
}

function buildAssistantMessage(messageId) {
  const body = el("div", { class: "message-body prose", "data-testid": "message-body" }, thinkingIndicator());
  const article = buildMessage({ role: "assistant", status: "streaming", messageId, body });
  article.querySelector(".message-footer").append(footerPlaceholder());
  return article;
}

/** Holds the line the latency badge takes at the end, so the answer does not grow then. */
function footerPlaceholder() {
  return el("span", { class: "latency-badge footer-placeholder", "aria-hidden": "true", text: "TTFT" });
}

function appendMessage(article) {
  $("empty-state")?.remove();
  ui.inner.append(article);
  scrollToBottomIfStuck();
}

function findMessage(messageId) {
  return ui.inner.querySelector(`.message[data-message-id="${CSS.escape(String(messageId))}"]`);
}

function errorBox(message) {
  return el(
    "div",
    { class: "message-error", "data-testid": "message-error", role: "alert" },
    el("span", { class: "message-error-text", text: message || "The reply failed." }),
    el("button", { type: "button", class: "button button-small", "data-retry": true, "data-testid": "retry-button", text: "Retry" }),
  );
}

// --- the reply being streamed ------------------------------------------------------
function trackReply(article, messageId) {
  const reply = {
    messageId,
    article,
    body: article.querySelector(".message-body"),
    lastIndex: -1,
    buffer: "",
    text: "",
    markdown: null, // a StreamedMarkdown once the first token is drawn
    frame: 0,
    stopRequested: false,
  };
  article.setAttribute("aria-busy", "true");
  state.reply = reply;
  return reply;
}

function scheduleFlush(reply) {
  if (!reply.frame) reply.frame = requestAnimationFrame(() => flush(reply));
}

function flush(reply) {
  if (reply.frame) cancelAnimationFrame(reply.frame);
  reply.frame = 0;
  if (!reply.buffer) return;
  if (!reply.markdown) {
    reply.body.replaceChildren();
    reply.body.classList.add("is-streamed");
    reply.article.classList.add("is-generating");
    reply.markdown = new StreamedMarkdown(reply.body);
  }
  reply.text += reply.buffer;
  reply.buffer = "";
  reply.markdown.update(reply.text);
  scrollToBottomIfStuck();
}

/** End a reply with its terminal event: complete, cancelled or a reply error. */
function finishReply(event, status) {
  const reply = state.reply && state.reply.messageId === event.message_id ? state.reply : null;
  const article = reply?.article ?? findMessage(event.message_id);
  if (!article) return;
  if (reply) flush(reply);
  const body = article.querySelector(".message-body");
  const footer = article.querySelector(".message-footer");
  footer.replaceChildren();
  body.classList.remove("is-plain", "is-streamed");
  if (status === "error") {
    // Keep the partial answer as it was drawn; the server sends what it saved.
    const partial = typeof event.content === "string" ? event.content : (reply?.text ?? body.textContent);
    let markdown = reply?.markdown;
    if (!markdown) {
      body.replaceChildren();
      markdown = new StreamedMarkdown(body);
    }
    markdown.update(partial);
    markdown.stop();
    footer.append(errorBox(event.message));
    article.dataset.errorCode = event.code;
  } else {
    body.innerHTML = event.html; // sanitized on the server (chat/rendering.py)
    enhanceCodeBlocks(body);
    if (status === "cancelled") {
      footer.append(el("span", { class: "marker marker-stopped", "data-testid": "message-stopped", text: "stopped" }));
    }
  }
  const badge = latencyBadge(event.metrics);
  if (badge) footer.append(badge);
  article.dataset.status = status;
  setVersions(article, versionsOf(article));
  article.classList.remove("is-generating");
  article.removeAttribute("aria-busy");
  if (reply) state.reply = null;
  state.resuming = false;
  updateControls();
  scrollToBottomIfStuck();
  followWaiting();
}

/** Follow a reply started elsewhere (another tab, a device, the API) in this conversation. */
function followReply(article, messageId) {
  if (state.reply || state.pending) {
    state.waiting = { messageId }; // followed once our own exchange is settled
    return;
  }
  trackReply(article, messageId);
  resume(state.reply);
  updateControls();
}

function followWaiting() {
  const waiting = state.waiting;
  state.waiting = null;
  if (!waiting || state.reply || state.pending || findMessage(waiting.messageId)?.dataset.status !== "streaming") return;
  followReply(findMessage(waiting.messageId), waiting.messageId);
}

/** Only the newest reply can be retried (the server refuses older ones). */
function pruneRetryButtons() {
  const replies = ui.inner.querySelectorAll('.message[data-role="assistant"]');
  replies.forEach((article, n) => {
    if (n < replies.length - 1) article.querySelector("[data-retry]")?.remove();
  });
}

// --- server events -----------------------------------------------------------------
const handlers = {
  ack(event) {
    const pending = state.pending;
    state.pending = null;
    if (pending?.userEl) {
      pending.userEl.dataset.messageId = event.user_message_id;
      pending.userEl.dataset.status = "complete";
      setVersions(pending.userEl, null);
    }
    adoptConversation(event.conversation_id, pending?.text ?? "");
    const article = placeReply(event, pending?.text ?? "");
    trackReply(article, event.message_id);
    pruneRetryButtons();
    if (pending?.stopRequested) requestStop();
    updateControls();
    scrollToBottomIfStuck();
  },

  // Another tab regenerated a reply, or edited a question: show the new version in its place.
  reply_regenerated(event) {
    showBranch(event, "");
  },

  message_edited(event) {
    showBranch(event, event.content);
  },

  // A tab switched to another version: show it and the path chosen below it.
  version_switched(event) {
    if (event.conversation_id !== state.conversationId) return;
    showPathFrom(event.message_id);
  },

  // Another tab (or device, or API client) of ours sent a message.
  user_message(event) {
    if (event.conversation_id !== state.conversationId) {
      showInSidebar(event.conversation_id, event.title);
      return;
    }
    moveCurrentConversationToTop();
    if (!findMessage(event.user_message_id)) {
      const question = buildUserMessage(event.content, { messageId: event.user_message_id, status: "complete" });
      appendMessage(question);
      setVersions(question, null);
    }
    let article = findMessage(event.message_id);
    if (!article) {
      article = buildAssistantMessage(event.message_id);
      appendMessage(article);
    }
    pruneRetryButtons();
    followReply(article, event.message_id);
  },

  // Another tab retried a failed reply: the new one takes its place here too.
  reply_retried(event) {
    if (event.conversation_id !== state.conversationId) {
      showInSidebar(event.conversation_id);
      return;
    }
    moveCurrentConversationToTop();
    const article = findMessage(event.message_id) ?? placeReply(event, "");
    followReply(article, event.message_id);
  },

  conversation_renamed(event) {
    const link = sidebarLink(event.conversation_id);
    const title = event.title || "New conversation";
    if (link) link.querySelector(".conversation-title").textContent = title;
    if (event.conversation_id === state.conversationId) {
      ui.title.textContent = title;
      document.title = document.title.replace(/^[^·]*/, `${title} `);
      if (document.activeElement !== ui.renameInput) ui.renameInput.value = event.title;
    }
  },

  conversation_deleted(event) {
    sidebarLink(event.conversation_id)?.closest("li")?.remove();
    if (event.conversation_id === state.conversationId) leaveDeletedConversation();
  },

  progress(event) {
    const reply = state.reply;
    if (!reply || reply.messageId !== event.message_id || reply.markdown) return;
    const label = reply.body.querySelector(".thinking-label");
    if (label && event.stage !== "complete") label.textContent = event.message;
  },

  token(event) {
    const reply = state.reply;
    if (!reply) return;
    state.resuming = false;
    // Resume may replay tokens we already have: the index says which.
    if (event.index <= reply.lastIndex) return;
    reply.lastIndex = event.index;
    reply.buffer += event.content;
    scheduleFlush(reply);
  },

  complete(event) {
    finishReply(event, "complete");
  },

  cancelled(event) {
    finishReply(event, "cancelled");
  },

  error(event) {
    if (event.message_id !== undefined && event.message_id !== null) {
      finishReply(event, "error");
      return;
    }
    // A refused frame: the connection and any reply carry on.
    if (state.pending && event.code !== "not_streaming") {
      failPending(event.message);
    } else if (state.resuming && state.reply && event.code === "not_found") {
      finishReply({ message_id: state.reply.messageId, message: event.message, code: event.code }, "error");
    }
    showNotice(event.message);
  },

  pong() {
    pongReceived(state);
  },
};

/**
 * Put the reply an `ack` (or another tab's event) announces where it belongs: in
 * place of a retried reply, of a regenerated one (a new version), or after the
 * new version of an edited question; else at the end.
 */
function placeReply(event, text) {
  const article = buildAssistantMessage(event.message_id);
  const failed = event.replaces ? findMessage(event.replaces) : null;
  const fork = event.version_of ? findMessage(event.version_of) : null;
  if (failed) {
    failed.replaceWith(article);
    const versions = versionsOf(failed)?.filter((id) => id !== event.replaces);
    if (versions) setVersions(article, [...versions, event.message_id]);
  } else if (fork?.dataset.role === "user") {
    const question = buildUserMessage(text, { messageId: event.user_message_id, status: "complete" });
    fork.before(question);
    removeFrom(fork);
    setVersions(question, event.versions);
    appendMessage(article);
  } else if (fork) {
    removeFrom(fork);
    appendMessage(article);
    setVersions(article, event.versions);
  } else {
    appendMessage(article);
  }
  return article;
}

function showBranch(event, text) {
  if (event.conversation_id !== state.conversationId) {
    showInSidebar(event.conversation_id);
    return;
  }
  moveCurrentConversationToTop();
  const article = findMessage(event.message_id) ?? placeReply(event, text);
  pruneRetryButtons();
  followReply(article, event.message_id);
}

/** Replace the version shown beside message `messageId` (and what follows) by it and its path. */
async function showPathFrom(messageId) {
  const shown = [...ui.inner.querySelectorAll(".message[data-versions]")].find((article) =>
    versionsOf(article).includes(messageId),
  );
  if (!shown || Number(shown.dataset.messageId) === messageId) return;
  const url = `${urlFor(ui.layout.dataset.olderUrlTemplate, state.conversationId)}?from=${encodeURIComponent(messageId)}`;
  try {
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const { html } = await response.json();
    const fragment = document.createRange().createContextualFragment(html);
    enhanceCodeBlocks(fragment);
    shown.before(fragment);
    removeFrom(shown);
    pruneRetryButtons();
    scrollToBottomIfStuck();
  } catch {
    showNotice("Could not load that version. Reload the page to see it.");
  }
}

function handleFrame(data) {
  let event;
  try {
    event = JSON.parse(data);
  } catch {
    return;
  }
  handlers[event.type]?.(event);
}

/** The message we sent was refused: take it back and return its text to the composer. */
function failPending(reason) {
  const { text, userEl } = state.pending;
  state.pending = null;
  if (!userEl) {
    // A retry: the failed reply stays as it was, its Retry button with it.
    updateControls();
    followWaiting();
    return;
  }
  if (!ui.input.value.trim()) {
    userEl.remove();
    ui.input.value = text;
    autosize();
  } else {
    userEl.dataset.status = "failed";
    userEl.querySelector(".message-content").append(el("p", { class: "message-note", text: `Not sent: ${reason}` }));
  }
  updateControls();
  followWaiting();
}

function sidebarLink(conversationId) {
  return ui.list.querySelector(`[data-testid=conversation-link][data-conversation-id="${CSS.escape(String(conversationId))}"]`);
}

/** A conversation of ours changed elsewhere: list it first, as the server orders it. */
function showInSidebar(conversationId, title = "") {
  let item = sidebarLink(conversationId)?.closest("li");
  if (!item) {
    ui.list.querySelector("[data-testid=conversation-empty]")?.remove();
    item = el("li", {}, conversationLink(conversationId, title || "New conversation", false));
  }
  const time = item.querySelector(".conversation-time");
  time.setAttribute("datetime", new Date().toISOString());
  time.textContent = "just now";
  if (item !== ui.list.firstElementChild) ui.list.prepend(item);
}

function conversationLink(conversationId, title, current) {
  return el(
    "a",
    {
      class: current ? "conversation-link is-current" : "conversation-link",
      href: urlFor(ui.layout.dataset.conversationUrlTemplate, conversationId),
      "data-testid": "conversation-link",
      "data-conversation-id": conversationId,
      "aria-current": current ? "page" : null,
    },
    el("span", { class: "conversation-title", text: title }),
    el("time", { class: "conversation-time", datetime: new Date().toISOString(), "data-relative": true, text: "just now" }),
  );
}

/** The conversation shown here was deleted elsewhere: become a new chat, and say why. */
function leaveDeletedConversation() {
  if (state.reply?.frame) cancelAnimationFrame(state.reply.frame);
  state.reply = null;
  state.pending = null;
  state.waiting = null;
  state.resuming = false;
  state.conversationId = null;
  olderMessages.observer?.disconnect();
  ui.inner.replaceChildren(
    el(
      "div",
      { class: "empty-state", id: "empty-state", "data-testid": "empty-state" },
      el("h2", { text: "What's on your mind?" }),
      el("p", { text: "Answers stream in as the model writes them; you can stop one at any time." }),
    ),
  );
  ui.title.textContent = "New chat";
  document.title = document.title.replace(/^[^·]*/, "New chat ");
  ui.renameInput.value = "";
  ui.menu.open = false;
  ui.menu.hidden = true;
  history.replaceState(null, "", ui.layout.dataset.conversationUrlTemplate.replace(/0\/$/, ""));
  showNotice("This conversation was deleted in another window.");
  updateControls();
}

/** Show the title the server gives an untitled conversation on its first message. */
function showTitle(text) {
  const title = titleFrom(text) || "New conversation";
  ui.title.textContent = title;
  document.title = document.title.replace(/^[^·]*/, `${title} `);
  ui.renameInput.value = titleFrom(text);
  return title;
}

function adoptConversation(conversationId, text) {
  if (state.conversationId === conversationId) {
    if (!ui.renameInput.value) {
      const title = showTitle(text);
      const current = ui.list.querySelector(".is-current .conversation-title");
      if (current) current.textContent = title;
    }
    moveCurrentConversationToTop();
    return;
  }
  state.conversationId = conversationId;
  const url = urlFor(ui.layout.dataset.conversationUrlTemplate, conversationId);
  history.replaceState(null, "", url);
  const title = showTitle(text);
  ui.list.querySelector("[data-testid=conversation-empty]")?.remove();
  for (const link of ui.list.querySelectorAll(".is-current")) {
    link.classList.remove("is-current");
    link.removeAttribute("aria-current");
  }
  ui.list.prepend(el("li", {}, conversationLink(conversationId, title, true)));
  ui.renameForm.action = urlFor(ui.renameForm.dataset.actionTemplate, conversationId);
  ui.deleteForm.action = urlFor(ui.deleteForm.dataset.actionTemplate, conversationId);
  ui.menu.hidden = false;
}

function moveCurrentConversationToTop() {
  const item = ui.list.querySelector(".is-current")?.closest("li");
  if (!item) return;
  const time = item.querySelector(".conversation-time");
  time.setAttribute("datetime", new Date().toISOString());
  time.textContent = "just now";
  if (item !== ui.list.firstElementChild) ui.list.prepend(item);
}

// --- sending ---------------------------------------------------------------------------
function sendFrame(frame) {
  if (!state.socket || state.socket.readyState !== WebSocket.OPEN) return false;
  state.socket.send(JSON.stringify(frame));
  return true;
}

function canSend() {
  return state.connected && !state.pending && !state.reply;
}

function sendMessage(rawText) {
  const text = rawText.trim();
  if (!text || !canSend()) return false;
  if (text.length > config.maxMessageChars) {
    showNotice(`Message is ${text.length} characters; the limit is ${config.maxMessageChars}.`);
    return false;
  }
  const frame = { type: "message", content: text };
  if (state.conversationId !== null && state.conversationId !== undefined) frame.conversation_id = state.conversationId;
  if (!sendFrame(frame)) return false;
  hideNotice();
  const userEl = buildUserMessage(text);
  state.stickToBottom = true;
  appendMessage(userEl);
  state.pending = { text, userEl, stopRequested: false };
  updateControls();
  return true;
}

function requestStop() {
  if (state.reply) {
    state.reply.stopRequested = true;
    sendFrame({ type: "cancel", message_id: state.reply.messageId });
  } else if (state.pending) {
    state.pending.stopRequested = true; // sent once the ack names the reply
  }
  updateControls();
}

function resume(reply) {
  state.resuming = true;
  reply.stopRequested = false; // a cancel sent on the old socket may never have arrived
  sendFrame({ type: "resume", message_id: reply.messageId, after: reply.lastIndex });
}

/** Answer the same question again: the server replaces the failed reply (`retry`), in place. */
function retry(article) {
  const messageId = Number(article.dataset.messageId);
  if (!messageId) return;
  if (!canSend()) {
    showNotice(state.connected ? "Wait for the current reply to finish." : "Not connected yet; try again in a moment.");
    return;
  }
  if (!sendFrame({ type: "retry", message_id: messageId })) return;
  hideNotice();
  state.stickToBottom = true;
  state.pending = { text: "", userEl: null, replaces: messageId, stopRequested: false };
  updateControls();
}

/** A new version of a reply (`regenerate`) or of a question (`edit`, with its new text). */
function branch(frame) {
  if (!canSend()) {
    showNotice(state.connected ? "Wait for the current reply to finish." : "Not connected yet; try again in a moment.");
    return false;
  }
  if (!sendFrame(frame)) return false;
  hideNotice();
  state.stickToBottom = true;
  state.pending = { text: frame.content ?? "", userEl: null, stopRequested: false };
  updateControls();
  return true;
}

function switchVersion(messageId) {
  if (!canSend()) {
    showNotice(state.connected ? "Wait for the current reply to finish." : "Not connected yet; try again in a moment.");
    return;
  }
  sendFrame({ type: "switch", message_id: messageId });
}

/** Edit a question in place: a box with its text, Send (a new version) and Cancel. */
function startEdit(article) {
  if (article.querySelector(".message-edit")) return;
  const body = article.querySelector(".message-body");
  const input = el("textarea", { class: "message-edit-input", "data-testid": "edit-input", rows: "3", "aria-label": "Edit message" });
  input.value = body.textContent;
  const form = el(
    "form",
    { class: "message-edit", "data-testid": "edit-form" },
    input,
    el(
      "div",
      { class: "message-edit-buttons" },
      el("button", { type: "submit", class: "button button-small", "data-testid": "edit-send", text: "Send" }),
      el("button", { type: "button", class: "button button-small button-quiet", "data-edit-cancel": "", text: "Cancel" }),
    ),
  );
  const close = () => {
    form.remove();
    body.hidden = false;
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const content = input.value.trim();
    if (content && branch({ type: "edit", message_id: Number(article.dataset.messageId), content })) close();
  });
  form.querySelector("[data-edit-cancel]").addEventListener("click", close);
  body.hidden = true;
  body.after(form);
  input.focus();
}

// --- controls ----------------------------------------------------------------------------
function updateControls() {
  const busy = Boolean(state.pending || state.reply);
  ui.send.disabled = !canSend() || !ui.input.value.trim();
  ui.stop.hidden = !busy;
  const stopping = Boolean(state.reply?.stopRequested || state.pending?.stopRequested);
  ui.stop.disabled = stopping || !state.connected;
  ui.stop.querySelector(".stop-label").textContent = stopping ? "Stopping…" : "Stop";
  ui.stop.title = busy ? "Stop the reply (Escape)" : "";
  ui.composer.dataset.busy = String(busy);
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
    enhanceCodeBlocks(fragment);
    marker.after(fragment);
    box.scrollTop = box.scrollHeight - fromBottom;
    if (page.has_more) {
      marker.dataset.before = page.oldest_id;
    } else {
      olderMessages.observer?.disconnect();
      marker.remove();
    }
  } catch (error) {
    marker.querySelector(".older-messages-label").textContent = "Could not load earlier messages. Scroll up to try again.";
    return;
  } finally {
    olderMessages.loading = false;
  }
  // A short page leaves the marker in view, which the observer does not report again.
  if ($("older-messages") && ui.messages.scrollTop < OLDER_MESSAGES_MARGIN_PX) loadOlderMessages();
}

function watchForOlderMessages() {
  const marker = $("older-messages");
  if (!marker) return;
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
  if (state.socket) return;
  setConnection(state.attempt === 0 ? "connecting" : "reconnecting", state.attempt === 0 ? undefined : "Reconnecting…");
  const socket = new WebSocket(socketUrl(config.wsPath));
  state.socket = socket;
  socket.addEventListener("open", () => {
    if (socket !== state.socket) return;
    state.connected = true;
    state.attempt = 0;
    setConnection("connected");
    startHeartbeat(state, sendFrame, dropSocket);
    if (state.reply) resume(state.reply);
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
  // Logging out closes this session's sockets (4401) while the page is already
  // on its way out: the navigation the person chose wins.
  if (state.leaving) return;
  if (code === CLOSE_UNAUTHENTICATED) {
    setConnection("offline", "Logged out");
    const next = encodeURIComponent(location.pathname);
    location.assign(`${ui.layout.dataset.loginUrl}?next=${next}`);
    return;
  }
  if (state.pending) failPending("the connection dropped before the server confirmed it.");
  updateControls();
  scheduleReconnect(state, setConnection, connect);
}

function reconnectNow() {
  if (state.socket) return;
  state.attempt = Math.min(state.attempt, 1);
  connect();
}

// --- sidebar (phone widths) ------------------------------------------------------------
function setSidebar(open) {
  ui.layout.classList.toggle("sidebar-open", open);
  ui.toggle.setAttribute("aria-expanded", String(open));
  ui.backdrop.hidden = !open;
  if (open) ui.sidebar.querySelector(".is-current, a")?.focus();
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
  if (state.reply || state.pending) {
    showNotice(STREAMING_NOTE); // say why Enter did nothing
    return;
  }
  ui.composer.requestSubmit();
});
ui.input.addEventListener("input", () => {
  autosize();
  updateControls();
});

ui.stop.addEventListener("click", requestStop);

ui.inner.addEventListener("click", (event) => {
  const button = event.target.closest("[data-retry], [data-regenerate], [data-edit], [data-switch-to]");
  if (!button) return;
  const article = button.closest(".message");
  if (button.dataset.switchTo) switchVersion(Number(button.dataset.switchTo));
  else if (button.hasAttribute("data-retry")) retry(article);
  else if (button.hasAttribute("data-regenerate")) branch({ type: "regenerate", message_id: Number(article.dataset.messageId) });
  else if (button.hasAttribute("data-edit")) startEdit(article);
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

ui.toggle.addEventListener("click", () => setSidebar(!ui.layout.classList.contains("sidebar-open")));
ui.backdrop.addEventListener("click", () => setSidebar(false));
ui.sidebarClose.addEventListener("click", () => {
  setSidebar(false);
  ui.toggle.focus();
});
/** Close what Escape closes first: the phone sidebar, open menus. True if something was open. */
function closeMenus() {
  if (ui.layout.classList.contains("sidebar-open")) {
    setSidebar(false);
    ui.toggle.focus();
    return true;
  }
  const open = [...ui.layout.querySelectorAll("details[open]")];
  for (const menu of open) {
    menu.open = false;
    if (menu.contains(document.activeElement)) menu.querySelector("summary")?.focus();
  }
  return open.length > 0;
}

// Escape closes an open menu; with none open, it stops the reply being streamed.
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || event.defaultPrevented || event.isComposing) return;
  if (closeMenus()) {
    event.preventDefault();
  } else if ((state.reply || state.pending) && !ui.stop.disabled) {
    event.preventDefault();
    requestStop();
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
  if (!state.connected) setConnection("offline");
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && !state.socket) reconnectNow();
});

// Stored replies: code blocks get their Copy buttons too.
enhanceCodeBlocks(ui.inner);

// A reply still streaming when the page loaded (a reload mid-answer): we can't
// know how many of its tokens the stored text holds, so replay it all.
const streaming = [...ui.inner.querySelectorAll('.message[data-role="assistant"][data-status="streaming"]')].pop();
if (streaming) {
  streaming.querySelector(".message-footer").replaceChildren(footerPlaceholder());
  streaming.querySelector(".message-body").replaceChildren(thinkingIndicator("Reconnecting to the reply…"));
  trackReply(streaming, Number(streaming.dataset.messageId));
}

pruneRetryButtons();
scrollToBottom();
watchForOlderMessages();
updateControls();
autosize();
connect();
