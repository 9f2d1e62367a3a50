// Behaviour shared by every page: confirm dialogs, copy buttons, dismissable
// flashes, relative times ("5 min ago") for <time data-relative>, the top bar's
// menu on narrow screens, and the light/dark toggle (theme.js applies it early).

/** Copy text to the clipboard; falls back to a hidden textarea where the API is missing. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // Permission denied (e.g. an unfocused document): try the old way.
    }
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

/** Briefly show the outcome on the button itself, then restore its label. */
export async function copyWithFeedback(button, text) {
  const label = button.dataset.label || button.textContent;
  button.dataset.label = label;
  const ok = await copyText(text);
  button.textContent = ok ? "Copied" : "Copy failed";
  button.classList.toggle("is-done", ok);
  clearTimeout(button._copyTimer);
  button._copyTimer = setTimeout(() => {
    button.textContent = label;
    button.classList.remove("is-done");
  }, 1500);
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

document.addEventListener("click", (event) => {
  const copy = event.target.closest("[data-copy-target]");
  if (copy) {
    const source = document.getElementById(copy.dataset.copyTarget);
    if (source) copyWithFeedback(copy, source.textContent.trim());
    return;
  }
  // Code blocks in rendered replies: copy the <pre> beside the button.
  const copyCode = event.target.closest("[data-copy-code]");
  if (copyCode) {
    const pre = copyCode.closest(".code-block")?.querySelector("pre");
    if (pre) copyWithFeedback(copyCode, pre.textContent);
    return;
  }
  const dismiss = event.target.closest("[data-dismiss]");
  if (dismiss) {
    dismiss.closest(".flash")?.remove();
    return;
  }
  const themeToggle = event.target.closest("[data-theme-toggle]");
  if (themeToggle) {
    setTheme(currentTheme() === "dark" ? "light" : "dark");
    return;
  }
  const navToggle = event.target.closest("[data-nav-toggle]");
  if (navToggle) {
    setMenuOpen(navToggle.getAttribute("aria-expanded") !== "true");
    return;
  }
  // A click outside the open menu closes it.
  if (!event.target.closest("#topbar-menu")) setMenuOpen(false);
});

// --- the top bar's menu (a button on narrow screens) -----------------------------------
function setMenuOpen(open) {
  const toggle = document.querySelector("[data-nav-toggle]");
  if (!toggle) return;
  toggle.setAttribute("aria-expanded", String(open));
  toggle.closest(".topbar")?.classList.toggle("topbar-open", open);
}

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && document.querySelector(".topbar-open")) {
    setMenuOpen(false);
    document.querySelector("[data-nav-toggle]")?.focus();
  }
});

// --- light/dark ----------------------------------------------------------------------
const THEME_KEY = "theme";
const systemDark = window.matchMedia("(prefers-color-scheme: dark)");

/** The theme on screen: the saved choice, else the system's. */
export function currentTheme() {
  const chosen = document.documentElement.dataset.theme;
  if (chosen === "light" || chosen === "dark") return chosen;
  return systemDark.matches ? "dark" : "light";
}

/** The toggle is a "Dark theme" switch: pressed while the dark theme is on screen. */
function showTheme() {
  const dark = currentTheme() === "dark";
  for (const button of document.querySelectorAll("[data-theme-toggle]")) {
    button.setAttribute("aria-pressed", String(dark));
    button.title = dark ? "Dark theme (on): switch to light" : "Dark theme (off): switch to dark";
  }
}

function setTheme(theme) {
  document.documentElement.dataset.theme = theme;
  try {
    localStorage.setItem(THEME_KEY, theme);
  } catch {
    // Not saved (storage refused): it still applies to this page.
  }
  showTheme();
}

// Another tab chose: follow it. The system changed: the toggle's label follows.
window.addEventListener("storage", (event) => {
  if (event.key !== THEME_KEY) return;
  if (event.newValue === "light" || event.newValue === "dark") {
    document.documentElement.dataset.theme = event.newValue;
  } else {
    delete document.documentElement.dataset.theme;
  }
  showTheme();
});
systemDark.addEventListener("change", showTheme);
showTheme();

const RELATIVE_UNITS = [
  ["year", 365 * 24 * 3600],
  ["month", 30 * 24 * 3600],
  ["week", 7 * 24 * 3600],
  ["day", 24 * 3600],
  ["hour", 3600],
  ["minute", 60],
];

/** "just now", "5 minutes ago", "yesterday"… in the browser's language. */
export function relativeTime(date, now = Date.now()) {
  const seconds = Math.round((date.getTime() - now) / 1000);
  if (Math.abs(seconds) < 60) return "just now";
  const format = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  for (const [unit, size] of RELATIVE_UNITS) {
    if (Math.abs(seconds) >= size) return format.format(Math.trunc(seconds / size), unit);
  }
  return "just now";
}

export function refreshRelativeTimes(root = document) {
  for (const node of root.querySelectorAll("time[data-relative][datetime]")) {
    const date = new Date(node.getAttribute("datetime"));
    if (Number.isNaN(date.getTime())) continue;
    node.title ||= date.toLocaleString();
    node.textContent = relativeTime(date);
  }
}

refreshRelativeTimes();
setInterval(refreshRelativeTimes, 60_000);
