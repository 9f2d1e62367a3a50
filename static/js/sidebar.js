// The chat page's sidebar: the whole history (more conversations load as the
// list is scrolled down) and search over titles and messages (a live filter:
// results with snippets replace the list while the box holds a query).
//
// Keys: "/" or Ctrl+K (⌘K) focuses the search; ↓ and ↑ move through the
// results, Enter in the box opens the first one, Escape clears the search.
// chat.js owns the list's first items (a new conversation, the current one
// moved to the top); this file only appends pages and never reorders.

import { refreshRelativeTimes } from "./app.js";

const SEARCH_DEBOUNCE_MS = 200;
const MORE_MARGIN_PX = 300;

const $ = (id) => document.getElementById(id);
const ui = {
  layout: $("chat-layout"),
  toggle: $("sidebar-toggle"),
  nav: $("sidebar-nav"),
  list: $("conversation-list"),
  more: $("conversation-more"),
  form: $("sidebar-search"),
  input: $("conversation-search"),
  resultsBox: $("search-results-box"),
  results: $("search-results"),
  resultsMore: $("search-more"),
  status: $("search-status"),
};

function currentConversationId() {
  return location.pathname.match(/\/chat\/(\d+)\/$/)?.[1] ?? null;
}

async function fetchPage(url) {
  const response = await fetch(url, {
    headers: { Accept: "application/json" },
    credentials: "same-origin",
    signal: search.controller?.signal,
  });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.json();
}

function fragmentOf(html) {
  return document.createRange().createContextualFragment(html);
}

/** Calls `load` whenever `marker` comes within MORE_MARGIN_PX of the sidebar's bottom. */
function watchEnd(marker, load) {
  const observer = new IntersectionObserver(
    (entries) => {
      if (entries.some((entry) => entry.isIntersecting)) load();
    },
    { root: ui.nav, rootMargin: `0px 0px ${MORE_MARGIN_PX}px 0px` },
  );
  observer.observe(marker);
  return observer;
}

/** A page that did not fill the sidebar leaves the marker in view, which is not reported again. */
function markerInReach(marker) {
  if (marker.hidden || !marker.isConnected) return false;
  const box = ui.nav.getBoundingClientRect();
  return box.height > 0 && marker.getBoundingClientRect().top < box.bottom + MORE_MARGIN_PX;
}

// --- the whole history ----------------------------------------------------------------
const history = { after: ui.more?.dataset.after ?? null, loading: false, observer: null };

async function loadMoreConversations() {
  if (!history.after || history.loading || searching()) return;
  history.loading = true;
  const label = ui.more.querySelector(".list-more-label");
  try {
    const url = `${ui.form.dataset.conversationsUrl}?after=${encodeURIComponent(history.after)}`;
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const page = await response.json();
    const fragment = fragmentOf(page.html);
    const current = currentConversationId();
    for (const link of fragment.querySelectorAll("[data-conversation-id]")) {
      const id = link.dataset.conversationId;
      // Already listed: chat.js moved it to the top since the page loaded.
      if (ui.list.querySelector(`[data-conversation-id="${CSS.escape(id)}"]`)) {
        link.closest("li").remove();
      } else if (id === current) {
        link.classList.add("is-current");
        link.setAttribute("aria-current", "page");
      }
    }
    ui.list.append(fragment);
    refreshRelativeTimes(ui.list);
    history.after = page.next;
    label.textContent = "Loading more conversations…";
    if (!page.next) {
      history.observer?.disconnect();
      ui.more.remove();
    }
  } catch {
    label.textContent = "Could not load more conversations. Scroll to try again.";
    return;
  } finally {
    history.loading = false;
  }
  if (history.after && markerInReach(ui.more)) loadMoreConversations();
}

if (ui.more) history.observer = watchEnd(ui.more, loadMoreConversations);

// --- search ---------------------------------------------------------------------------
const search = { query: "", after: null, loading: false, timer: 0, controller: null, seq: 0, fresh: false };

function searching() {
  return !ui.resultsBox.hidden;
}

function showResults(on) {
  ui.resultsBox.hidden = !on;
  ui.list.hidden = on;
  if (ui.more?.isConnected) ui.more.hidden = on;
  ui.nav.setAttribute("aria-label", on ? "Search results" : "Your conversations");
}

function endSearch() {
  clearTimeout(search.timer);
  search.controller?.abort();
  search.seq += 1;
  search.query = "";
  search.after = null;
  search.fresh = false;
  ui.results.replaceChildren();
  ui.status.textContent = "";
  showResults(false);
  if (history.after && markerInReach(ui.more)) loadMoreConversations();
}

/** Run the box's query (a first page), or read the next page of the current one. */
async function runSearch({ more = false } = {}) {
  clearTimeout(search.timer);
  const query = more ? search.query : ui.input.value.trim();
  if (!query) {
    endSearch();
    return;
  }
  if (more && (search.loading || !search.after)) return;
  if (!more) {
    search.controller?.abort();
    search.controller = new AbortController();
  }
  const seq = more ? search.seq : ++search.seq;
  search.loading = true;
  showResults(true);
  if (!more) ui.status.textContent = "Searching…";
  const params = new URLSearchParams({ q: query });
  if (more) params.set("after", search.after);
  try {
    const page = await fetchPage(`${ui.form.action}?${params}`);
    if (seq !== search.seq) return;
    const fragment = fragmentOf(page.html);
    if (more) ui.results.append(fragment);
    else ui.results.replaceChildren(fragment);
    refreshRelativeTimes(ui.results);
    search.query = query;
    search.after = page.next;
    search.fresh = ui.input.value.trim() === query;
    ui.resultsMore.hidden = !page.next;
    const shown = ui.results.children.length;
    ui.status.textContent = shown
      ? `${shown}${page.next ? "+" : ""} conversation${shown === 1 ? "" : "s"} found`
      : `No conversations match “${query}”.`;
  } catch (error) {
    if (error.name === "AbortError" || seq !== search.seq) return;
    ui.status.textContent = "Search failed. Try again in a moment.";
  } finally {
    if (seq === search.seq) search.loading = false;
  }
  if (search.after && markerInReach(ui.resultsMore)) runSearch({ more: true });
}

watchEnd(ui.resultsMore, () => runSearch({ more: true }));

ui.input.addEventListener("input", () => {
  search.fresh = false;
  clearTimeout(search.timer);
  if (!ui.input.value.trim()) endSearch();
  else search.timer = setTimeout(runSearch, SEARCH_DEBOUNCE_MS);
});

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const first = ui.results.querySelector("a");
  if (search.fresh && first) first.click();
  else runSearch();
});

function resultLinks() {
  return [...ui.results.querySelectorAll("a")];
}

ui.input.addEventListener("keydown", (event) => {
  if (event.key === "ArrowDown" && searching()) {
    event.preventDefault();
    resultLinks()[0]?.focus();
  } else if (event.key === "Escape" && ui.input.value) {
    // Clear first; a second Escape reaches the page (which closes the phone drawer).
    event.preventDefault();
    event.stopPropagation();
    ui.input.value = "";
    endSearch();
  }
});

ui.results.addEventListener("keydown", (event) => {
  if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
  const links = resultLinks();
  const at = links.indexOf(document.activeElement);
  if (at === -1) return;
  event.preventDefault();
  const next = at + (event.key === "ArrowDown" ? 1 : -1);
  if (next < 0) ui.input.focus();
  else links[Math.min(next, links.length - 1)].focus();
});

// --- shortcuts ----------------------------------------------------------------------------
function typingSomewhere(target) {
  return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
}

function focusSearch() {
  // On narrow screens the sidebar is a drawer: open it first (chat.js owns it).
  const drawer = getComputedStyle(ui.toggle).display !== "none";
  if (drawer && !ui.layout.classList.contains("sidebar-open")) ui.toggle.click();
  ui.input.focus();
  ui.input.select();
}

document.addEventListener("keydown", (event) => {
  if (event.defaultPrevented || event.isComposing) return;
  const ctrlK = (event.ctrlKey || event.metaKey) && !event.altKey && event.key.toLowerCase() === "k";
  const slash = event.key === "/" && !event.ctrlKey && !event.metaKey && !event.altKey && !typingSomewhere(event.target);
  if (ctrlK || slash) {
    event.preventDefault();
    focusSearch();
  }
});
