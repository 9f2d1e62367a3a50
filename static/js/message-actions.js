// Every message's actions: when it was sent (hover for the full local time) and
// Copy, which copies the whole message as text. Stored messages come with them
// (templates/chat/_message_actions.html); live ones, which static/js/chat.js
// builds, get them here as they appear. Used by the chat and the shared pages.

import { copyWithFeedback } from "./app.js";
import { el, enhanceCodeBlocks } from "./messages.js";

const list = document.getElementById("messages-inner");

/** The time's title in the reader's own time zone and language; its text, hours and minutes. */
function localize(time) {
  const date = new Date(time.dateTime);
  if (Number.isNaN(date.getTime())) return;
  time.title = date.toLocaleString(undefined, { dateStyle: "full", timeStyle: "medium" });
  time.textContent = date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

function actions(date) {
  return el(
    "div",
    { class: "message-actions", "data-testid": "message-actions" },
    el("time", { class: "message-time", "data-testid": "message-time", dateTime: date.toISOString() }),
    el("button", {
      type: "button",
      class: "message-copy",
      "data-copy-message": true,
      "data-testid": "copy-message",
      title: "Copy message",
      text: "Copy",
    }),
  );
}

function equip(article) {
  let bar = article.querySelector(".message-actions");
  if (!bar) {
    // A live message: it was sent (or began) just now.
    bar = actions(new Date());
    article.querySelector(".message-content")?.append(bar);
    // Versions, Edit or Regenerate (static/js/chat.js) may come first: they belong in the bar.
    const branch = article.querySelector(".message-content > .message-branch");
    if (branch) bar.append(branch);
  }
  const time = bar.querySelector("time");
  if (time && !time.dataset.localized) {
    localize(time);
    time.dataset.localized = "true";
  }
}

/** The message as text: what the reader sees, without the code blocks' own labels. */
function messageText(body) {
  // A person's message, or an answer shown as plain text (streaming, failed): the text itself.
  if (!body.classList.contains("prose") || body.classList.contains("is-plain")) {
    return body.textContent.trim();
  }
  const copy = body.cloneNode(true);
  for (const head of copy.querySelectorAll(".code-block-head")) head.remove();
  for (const node of copy.querySelectorAll("[data-testid=thinking]")) node.remove();
  // innerText keeps paragraphs and line breaks, but only for an element laid out.
  const holder = el("div", { class: "copy-holder", "aria-hidden": "true" }, copy);
  document.body.append(holder);
  const text = copy.innerText.trim();
  holder.remove();
  return text;
}

if (list) {
  enhanceCodeBlocks(list);
  for (const article of list.querySelectorAll(".message")) equip(article);
  new MutationObserver((changes) => {
    for (const change of changes) {
      for (const node of change.addedNodes) {
        if (!(node instanceof Element)) continue;
        if (node.matches(".message")) equip(node);
        for (const article of node.querySelectorAll(".message")) equip(article);
      }
    }
  }).observe(list, { childList: true });

  list.addEventListener("click", (event) => {
    const button = event.target.closest("[data-copy-message]");
    const body = button?.closest(".message")?.querySelector(".message-body");
    if (body) copyWithFeedback(button, messageText(body));
  });
}
