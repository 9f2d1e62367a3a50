// A reply's text drawn as Markdown while it streams, so the server's rendering
// (realtime/rendering.py: markdown-it, CommonMark with `breaks`, tables and
// strikethrough) that replaces it at the end takes the same room: same blocks,
// same line breaks, the same code-block frame. The answer does not jump.
//
// Only DOM nodes with textContent are built here, never HTML from the model:
// the server's sanitized `html` stays the only markup assigned with innerHTML.
// This is a close approximation, not a second Markdown parser: what it gets
// wrong costs a few pixels at the swap, never safety.

import { el, enhanceCodeBlocks } from "./messages.js";

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE = /^ {0,3}> ?/;
const BULLET = /^( {0,3})([-*+])([ \t]+|$)/;
const ORDERED = /^( {0,3})(\d{1,9})([.)])([ \t]+|$)/;
const SETEXT = /^ {0,3}(=+|-+)[ \t]*$/;
const TABLE_DELIMITER = /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/;
const INDENTED = /^(?: {4}|\t)/;
const SAFE_LINK = /^(https?:|mailto:)/i;

const isBlank = (line) => line.trim() === "";

function listMarker(line) {
  let match = BULLET.exec(line);
  if (match) return { ordered: false, marker: match[2], start: 1, width: match[0].length + (match[3] ? 0 : 1) };
  match = ORDERED.exec(line);
  if (match) return { ordered: true, marker: match[3], start: Number(match[2]), width: match[0].length + (match[4] ? 0 : 1) };
  return null;
}

/** Does `line` end a paragraph (CommonMark: these blocks may interrupt one)? */
function interruptsParagraph(line) {
  if (FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line)) return true;
  const item = listMarker(line);
  return Boolean(item && !isBlank(line.slice(item.width)) && (!item.ordered || item.start === 1));
}

/** Split text into blocks: {kind, key, ...}; `key` is the block's own source. */
export function parseBlocks(text) {
  const lines = text.split("\n");
  const blocks = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const from = i;
    if (isBlank(line)) {
      i += 1;
      continue;
    }
    let match = FENCE.exec(line);
    if (match) {
      const fence = match[1];
      const indent = line.length - line.trimStart().length;
      const body = [];
      i += 1;
      while (i < lines.length) {
        const close = lines[i].trim();
        if (close.startsWith(fence[0].repeat(fence.length)) && /^([`~])\1*$/.test(close)) {
          i += 1;
          break;
        }
        body.push(lines[i].replace(new RegExp(`^ {0,${indent}}`), ""));
        i += 1;
      }
      blocks.push({ kind: "code", language: match[2], text: body.join("\n") });
    } else if ((match = HEADING.exec(line))) {
      blocks.push({ kind: "heading", level: match[1].length, text: match[2] ?? "" });
      i += 1;
    } else if (RULE.test(line)) {
      blocks.push({ kind: "rule" });
      i += 1;
    } else if (QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length && !isBlank(lines[i]) && (QUOTE.test(lines[i]) || !interruptsParagraph(lines[i]))) {
        inner.push(lines[i].replace(QUOTE, ""));
        i += 1;
      }
      blocks.push({ kind: "quote", children: parseBlocks(inner.join("\n")) });
    } else if (listMarker(line)) {
      i = parseList(lines, i, blocks);
    } else if (INDENTED.test(line)) {
      const body = [];
      while (i < lines.length && (INDENTED.test(lines[i]) || isBlank(lines[i]))) {
        body.push(lines[i].replace(INDENTED, ""));
        i += 1;
      }
      while (body.length && isBlank(body[body.length - 1])) body.pop();
      blocks.push({ kind: "code", language: "", text: body.join("\n") });
    } else if (line.includes("|") && i + 1 < lines.length && TABLE_DELIMITER.test(lines[i + 1]) && lines[i + 1].includes("-")) {
      const rows = [line];
      const delimiter = lines[i + 1];
      i += 2;
      while (i < lines.length && !isBlank(lines[i]) && lines[i].includes("|")) {
        rows.push(lines[i]);
        i += 1;
      }
      blocks.push({ kind: "table", delimiter, rows });
    } else {
      const body = [line];
      i += 1;
      let setext = 0;
      while (i < lines.length && !isBlank(lines[i])) {
        const setextMatch = SETEXT.exec(lines[i]);
        if (setextMatch) {
          setext = setextMatch[1][0] === "=" ? 1 : 2;
          i += 1;
          break;
        }
        if (interruptsParagraph(lines[i])) break;
        body.push(lines[i]);
        i += 1;
      }
      blocks.push(setext ? { kind: "heading", level: setext, text: body.join("\n").trim() } : { kind: "paragraph", text: body.join("\n") });
    }
    blocks[blocks.length - 1].key = lines.slice(from, i).join("\n");
  }
  return blocks;
}

function parseList(lines, i, blocks) {
  const first = listMarker(lines[i]);
  const list = { kind: "list", ordered: first.ordered, start: first.start, loose: false, items: [] };
  let sawBlank = false;
  while (i < lines.length) {
    const item = listMarker(lines[i]);
    if (!item || item.ordered !== first.ordered || item.marker !== first.marker) break;
    if (sawBlank) list.loose = true;
    const body = [lines[i].slice(item.width)];
    i += 1;
    sawBlank = false;
    while (i < lines.length) {
      const line = lines[i];
      if (isBlank(line)) {
        sawBlank = true;
        body.push("");
        i += 1;
        continue;
      }
      const indent = line.length - line.trimStart().length;
      if (indent >= item.width) {
        if (sawBlank) list.loose = true; // two blocks of one item, apart
        body.push(line.slice(item.width));
      } else if (!sawBlank && !listMarker(line) && !interruptsParagraph(line)) {
        body.push(line.trimStart()); // a lazy continuation of the item's paragraph
      } else {
        break;
      }
      sawBlank = false;
      i += 1;
    }
    while (body.length && isBlank(body[body.length - 1])) body.pop();
    list.items.push(parseBlocks(body.join("\n")));
  }
  blocks.push(list);
  return i;
}

// --- inline ---------------------------------------------------------------------------
const INLINE = /(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)|\*\*(?=\S)([\s\S]*?\S)\*\*|__(?=\S)([\s\S]*?\S)__|\*(?=[^\s*])([\s\S]*?[^\s*])\*|~~(?=\S)([\s\S]*?\S)~~|\[([^\]\n]+)\]\(([^()\s]+)\)/g;

/** Append `text` with code spans, emphasis, strikethrough and links, and a <br> per newline. */
function appendInline(parent, text) {
  let last = 0;
  for (const match of text.matchAll(INLINE)) {
    appendText(parent, text.slice(last, match.index));
    last = match.index + match[0].length;
    const [, , code, strong, strongUnderscore, em, del, linkText, href] = match;
    if (code !== undefined) {
      const inner = /^ .* $/s.test(code) && code.trim() ? code.slice(1, -1) : code;
      parent.append(el("code", { text: inner.replace(/\n/g, " ") }));
    } else if (strong !== undefined || strongUnderscore !== undefined) {
      const node = el("strong");
      appendInline(node, strong ?? strongUnderscore);
      parent.append(node);
    } else if (em !== undefined) {
      const node = el("em");
      appendInline(node, em);
      parent.append(node);
    } else if (del !== undefined) {
      const node = el("del");
      appendInline(node, del);
      parent.append(node);
    } else {
      const node = SAFE_LINK.test(href) ? el("a", { href, rel: "noopener noreferrer nofollow" }) : el("span");
      appendInline(node, linkText);
      parent.append(node);
    }
  }
  appendText(parent, text.slice(last));
}

function appendText(parent, text) {
  const lines = text.split("\n");
  lines.forEach((line, n) => {
    if (n > 0) parent.append(el("br"));
    if (line) parent.append(line);
  });
}

/** Paragraph text as markdown-it keeps it: lines trimmed, a hard break between them. */
function paragraphText(text) {
  return text
    .split("\n")
    .map((line) => line.trim())
    .join("\n");
}

// --- blocks to DOM -----------------------------------------------------------------------
function tableCells(row) {
  let cells = row.trim();
  if (cells.startsWith("|")) cells = cells.slice(1);
  if (cells.endsWith("|") && !cells.endsWith("\\|")) cells = cells.slice(0, -1);
  return cells.split(/(?<!\\)\|/).map((cell) => cell.trim());
}

function alignments(delimiter) {
  return tableCells(delimiter).map((cell) => {
    const left = cell.startsWith(":");
    const right = cell.endsWith(":");
    if (left && right) return "align-center";
    if (right) return "align-right";
    return left ? "align-left" : null;
  });
}

function buildTable(block) {
  const aligns = alignments(block.delimiter);
  const row = (source, tag) => {
    const cells = tableCells(source);
    return el(
      "tr",
      {},
      ...aligns.map((align, n) => {
        const cell = el(tag, { class: align });
        appendInline(cell, cells[n] ?? "");
        return cell;
      }),
    );
  };
  const table = el("table", {}, el("thead", {}, row(block.rows[0], "th")));
  if (block.rows.length > 1) table.append(el("tbody", {}, ...block.rows.slice(1).map((source) => row(source, "td"))));
  return table;
}

function buildBlock(block) {
  switch (block.kind) {
    case "code": {
      const code = el("code", { class: block.language ? `language-${block.language}` : null, text: block.text });
      const holder = el("div", {}, el("pre", {}, code));
      enhanceCodeBlocks(holder); // the same frame and Copy button the final answer gets
      return holder.firstElementChild;
    }
    case "heading": {
      const node = el(`h${block.level}`);
      appendInline(node, block.text.trim());
      return node;
    }
    case "rule":
      return el("hr");
    case "quote":
      return el("blockquote", {}, ...block.children.map((child) => buildBlock(child)));
    case "list": {
      const list = el(block.ordered ? "ol" : "ul", { start: block.ordered && block.start !== 1 ? block.start : null });
      for (const children of block.items) {
        const item = el("li");
        for (const child of children) {
          if (child.kind === "paragraph" && !block.loose) appendInline(item, paragraphText(child.text));
          else item.append(buildBlock(child));
        }
        list.append(item);
      }
      return list;
    }
    case "table":
      return buildTable(block);
    default: {
      const node = el("p");
      appendInline(node, paragraphText(block.text));
      return node;
    }
  }
}

/** The deepest last element of `node` where the text ends: where the cursor goes. */
function textEnd(node) {
  let target = node;
  for (;;) {
    if (target.classList?.contains("code-block")) return target.querySelector("code") ?? target;
    const last = target.lastElementChild;
    if (!last || last.tagName === "BR" || !["UL", "OL", "LI", "BLOCKQUOTE", "TABLE", "THEAD", "TBODY", "TR", "TD", "TH", "P", "DIV"].includes(last.tagName)) {
      return target;
    }
    target = last;
  }
}

/**
 * Draws a growing text into `container` as Markdown blocks. Blocks whose
 * source did not change keep their nodes: only the last one or two are
 * rebuilt per animation frame, however long the reply.
 */
export class StreamedMarkdown {
  constructor(container) {
    this.container = container;
    this.blocks = []; // [{key, node}]
    this.cursor = el("span", { class: "stream-cursor", "aria-hidden": "true" });
  }

  update(text) {
    const blocks = parseBlocks(text);
    let same = 0;
    while (same < blocks.length && same < this.blocks.length && blocks[same].key === this.blocks[same].key) same += 1;
    for (const old of this.blocks.splice(same)) old.node.remove();
    for (const block of blocks.slice(same)) {
      const node = buildBlock(block);
      this.container.append(node);
      this.blocks.push({ key: block.key, node });
    }
    const last = this.blocks[this.blocks.length - 1];
    if (last) textEnd(last.node).append(this.cursor);
  }

  /** Take the cursor away (the reply ended). */
  stop() {
    this.cursor.remove();
  }
}
