// What the chat page and the room page draw the same way: elements, the
// "thinking" dots, latency badges, and code blocks of rendered answers.

/** A DOM element: `class`, `text`, properties, then attributes; children appended. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name in node) node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children);
  return node;
}

export function formatNumber(value, digits) {
  return Number(value).toLocaleString(undefined, {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

export function thinkingIndicator(label = "Thinking…") {
  return el(
    "span",
    { class: "thinking", "data-testid": "thinking" },
    el("span", { class: "thinking-dots", "aria-hidden": "true" }, el("span"), el("span"), el("span")),
    el("span", { class: "thinking-label", text: label }),
  );
}

/** TTFT · tokens/s · tokens of a finished answer; null when it has no first token. */
export function latencyBadge(metrics) {
  if (!metrics || metrics.ttft_ms === null || metrics.ttft_ms === undefined) return null;
  const badge = el("span", {
    class: "latency-badge",
    "data-testid": "latency-badge",
    "data-ttft-ms": Math.round(metrics.ttft_ms),
    title: "Time to first token · generation speed · tokens",
  });
  badge.append(el("span", { text: `TTFT ${formatNumber(metrics.ttft_ms, 0)} ms` }));
  if (metrics.tokens_per_second !== null && metrics.tokens_per_second !== undefined) {
    badge.append(el("span", { text: `${formatNumber(metrics.tokens_per_second, 1)} tok/s` }));
  }
  if (metrics.tokens !== null && metrics.tokens !== undefined) {
    badge.append(el("span", { text: `${metrics.tokens} token${metrics.tokens === 1 ? "" : "s"}` }));
  }
  return badge;
}

/** Wrap each <pre> of rendered html with a Copy button and its language, once. */
export function enhanceCodeBlocks(root) {
  for (const pre of root.querySelectorAll("pre")) {
    if (pre.parentElement.classList.contains("code-block")) continue;
    const wrapper = el("div", { class: "code-block" });
    pre.replaceWith(wrapper);
    const language = [...(pre.querySelector("code")?.classList ?? [])]
      .find((name) => name.startsWith("language-"))
      ?.slice("language-".length);
    const head = el(
      "div",
      { class: "code-block-head" },
      el("span", { class: "code-language", text: language || "code" }),
      el("button", { type: "button", class: "copy-code", "data-copy-code": true, "aria-label": "Copy code", text: "Copy" }),
    );
    // Markdown ends every fence with a newline, which renders as an empty last line.
    const last = (pre.querySelector("code") ?? pre).lastChild;
    if (last?.nodeType === Node.TEXT_NODE) last.data = last.data.replace(/\n+$/, "");
    pre.tabIndex = 0; // a scrollable region must be reachable by keyboard
    wrapper.append(head, pre);
  }
}
