"""Model output to safe HTML: Markdown rendered, then sanitized.

Model text is untrusted input. Raw HTML in it is escaped by the Markdown
parser and the result is cleaned again by nh3 (an allow-list sanitizer), so
neither a prompt-injected <script> nor a javascript: link reaches a browser.
No inline styles come out (the CSP forbids them): table column alignment is a
class (`align-left|center|right`), and fenced code with a known language is
highlighted here, at render time, by Pygments into `<span class="hl-…">`
token classes (static/css/highlight.css colours them); besides a code block's
`language-*`, those are the only classes allowed.
Images load nothing: `![alt](url)` becomes its alt text and a link to the URL
(no <img>, so a reply cannot make the browser fetch from anywhere).
"""

from __future__ import annotations

import asyncio

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

HIGHLIGHT_CLASS_PREFIX = "hl-"
# Longer code is left plain: highlighting grows with the code, and a reply is
# rendered on the save path.
HIGHLIGHT_MAX_CHARS = 20_000

_formatter = HtmlFormatter(nowrap=True, classprefix=HIGHLIGHT_CLASS_PREFIX)


def _highlight(code: str, language: str, _attrs: str) -> str:
    """Token spans for a fenced block in a known language; "" leaves it to markdown-it."""
    if not language or len(code) > HIGHLIGHT_MAX_CHARS:
        return ""
    try:
        lexer = get_lexer_by_name(language, stripnl=False)
    except ClassNotFound:
        return ""
    # markdown-it wraps this in <pre><code class="language-…">.
    return highlight(code, lexer, _formatter)


_markdown = MarkdownIt(
    "commonmark",
    {"html": False, "linkify": False, "breaks": True, "highlight": _highlight},
).enable(["table", "strikethrough"])


def _aligned_cell(renderer, tokens, idx, options, env):
    """th/td: markdown-it writes alignment as style="text-align:…"; make it a class."""
    token = tokens[idx]
    style = token.attrGet("style")
    if style and style.startswith("text-align:"):
        token.attrs.pop("style")
        token.attrSet("class", f"align-{style.removeprefix('text-align:')}")
    return renderer.renderToken(tokens, idx, options, env)


for _cell in ("th_open", "td_open"):
    _markdown.add_render_rule(_cell, _aligned_cell)


def _image_as_link(renderer, tokens, idx, options, env):
    """An image shows as its alt text and a link to it: nothing is loaded."""
    token = tokens[idx]
    alt = escapeHtml(renderer.renderInlineAsText(token.children or [], options, env).strip())
    # Inside a link's text (a linked badge) a second <a> would nest: the alt text only.
    opened = sum(t.type == "link_open" for t in tokens[:idx])
    closed = sum(t.type == "link_close" for t in tokens[:idx])
    if opened > closed:
        return f"{alt or 'image'} (image)"
    src = escapeHtml(token.attrGet("src") or "")
    title = token.attrGet("title")
    title_attr = f' title="{escapeHtml(title)}"' if title else ""
    link = f'<a href="{src}"{title_attr}>image</a>'
    return f"{alt} ({link})" if alt else link


_markdown.add_render_rule("image", _image_as_link)

_ALLOWED_TAGS = {
    "p", "br", "hr", "strong", "em", "del", "code", "pre", "blockquote",
    "ul", "ol", "li", "a", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td", "span",
}  # fmt: skip
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "th": {"class"},
    "td": {"class"},
    "span": {"class"},
}
_ALIGN_CLASSES = {"align-left", "align-center", "align-right"}
# Pygments' token classes, e.g. `hl-k` (keyword), `hl-s2` (double-quoted string).
TOKEN_CLASSES = frozenset(HIGHLIGHT_CLASS_PREFIX + name for name in STANDARD_TYPES.values() if name)


def _allowed_class(tag: str, name: str, value: str) -> str | None:
    if name != "class":
        return value
    if tag == "code":
        return value if value.startswith("language-") and value.isascii() else None
    if tag == "span":
        # A token of a lexer's own subtype gets extra classes: keep the standard ones.
        kept = [cls for cls in value.split() if cls in TOKEN_CLASSES]
        return " ".join(kept) or None
    return value if value in _ALIGN_CLASSES else None


def render_markdown(text: str) -> str:
    """Sanitized HTML for one message."""
    html = _markdown.render(text)
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        attribute_filter=_allowed_class,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )


async def render_markdown_off_loop(text: str) -> str:
    """render_markdown on a worker thread: a long answer must not stall every socket."""
    return await asyncio.to_thread(render_markdown, text)
