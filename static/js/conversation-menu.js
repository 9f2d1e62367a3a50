// The conversation header's model picker and the conversation menu's own parts
// (system prompt, export, share). They act on the conversation the page shows:
// a new chat has none until its first message (static/js/chat.js then puts its
// id in the address) or until a model is picked for it, which creates it.

const layout = document.getElementById("chat-layout");
const picker = document.getElementById("model-picker");
const menu = document.getElementById("conversation-menu");
const composer = document.getElementById("composer-input");
const DRAFT_KEY = "conversation-menu:draft";

/** The id in the address (`/chat/<id>/`), or null on a new chat. */
function currentConversationId() {
  const [before, after] = layout.dataset.conversationUrlTemplate.split("/0/");
  const path = window.location.pathname;
  if (!path.startsWith(before) || !path.endsWith("/") || after !== "") return null;
  const id = path.slice(before.length + 1, -1);
  return /^\d+$/.test(id) ? id : null;
}

/** Fill a `{% url ... 0 %}` path with a real id. */
function urlFor(template, id) {
  return template.replace(/\/0\/(?!.*\/0\/)/, `/${id}/`);
}

function csrfToken() {
  return document.querySelector("input[name=csrfmiddlewaretoken]")?.value ?? "";
}

async function postSettings(url, fields) {
  const response = await fetch(url, {
    method: "POST",
    headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
    body: new URLSearchParams(fields),
    credentials: "same-origin",
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.message || `The settings were not saved (HTTP ${response.status}).`);
  return data;
}

// --- the model picker ----------------------------------------------------------------------
async function loadModels() {
  try {
    const response = await fetch(picker.dataset.modelsUrl, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const { models } = await response.json();
    const present = new Set([...picker.options].map((option) => option.value));
    for (const model of models) {
      if (!present.has(model)) picker.append(new Option(model, model));
    }
  } catch {
    // The picker keeps the default and the current model.
  } finally {
    picker.dataset.loaded = "true";
  }
}

let savedModel = picker?.value ?? "";

async function pickModel() {
  const id = currentConversationId();
  const url = id === null ? picker.dataset.newUrl : urlFor(picker.dataset.urlTemplate, id);
  picker.disabled = true;
  try {
    const data = await postSettings(url, { model: picker.value });
    savedModel = data.model;
    picker.title = "";
    if (id === null) {
      // The new conversation exists now: open it, keeping what was typed.
      if (composer?.value) sessionStorage.setItem(DRAFT_KEY, composer.value);
      window.location.assign(data.url);
      return;
    }
    picker.dataset.saved = data.model;
  } catch (error) {
    picker.value = savedModel;
    picker.title = error.message;
    window.alert(error.message);
  } finally {
    picker.disabled = false;
  }
}

if (picker) {
  picker.addEventListener("change", pickModel);
  loadModels();
}

const draft = sessionStorage.getItem(DRAFT_KEY);
if (draft !== null) {
  sessionStorage.removeItem(DRAFT_KEY);
  if (composer && !composer.value) {
    composer.value = draft;
    composer.dispatchEvent(new Event("input", { bubbles: true }));
  }
}

// --- the menu -------------------------------------------------------------------------------
/** Point the menu's forms and links at the conversation the page shows now. */
function aimMenu() {
  const id = currentConversationId();
  if (id === null) return;
  for (const form of menu.querySelectorAll("form[data-action-template]")) {
    form.action = urlFor(form.dataset.actionTemplate, id);
  }
  for (const link of menu.querySelectorAll("a[data-href-template]")) {
    link.href = urlFor(link.dataset.hrefTemplate, id);
  }
}

if (menu) {
  menu.addEventListener("toggle", () => {
    if (menu.open) aimMenu();
  });
  // A form sent from the menu may be sent before the menu was ever opened (Enter).
  menu.addEventListener("submit", aimMenu, { capture: true });
  // Back from creating or revoking a share link: show the menu again.
  if (window.location.hash === "#conversation-menu" && !menu.hidden) {
    history.replaceState(null, "", window.location.pathname + window.location.search);
    menu.open = true;
  }
}
