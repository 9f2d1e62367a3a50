"""The sources hold nothing the Content-Security-Policy would block.

The policy allows no inline script and no inline style (realtime_site/settings.py);
the rendered pages are checked in tests/consumers/test_security.py, and these
checks catch what a page test may not render (an error branch, a script's markup).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = sorted((ROOT / "templates").rglob("*.html"))
SCRIPTS = sorted((ROOT / "static" / "js").glob("*.js"))

STYLE_ATTRIBUTE = re.compile(r"""\sstyle\s*=|setAttribute\(\s*["']style["']|cssText""")
EVENT_HANDLER_ATTRIBUTE = re.compile(r"""<[^>]*\son[a-z]+\s*=""", re.IGNORECASE)
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\ssrc=)[^>]*>", re.IGNORECASE)


def test_there_are_sources_to_check():
    assert TEMPLATES and SCRIPTS


def test_the_patterns_find_what_the_policy_blocks():
    assert STYLE_ATTRIBUTE.search('<p class="x" style="color: red">')
    assert STYLE_ATTRIBUTE.search('node.setAttribute("style", "top: 0")')
    assert EVENT_HANDLER_ATTRIBUTE.search('<button type="button"\n  onclick="go()">')
    assert INLINE_SCRIPT.search("<script>alert(1)</script>")
    assert not INLINE_SCRIPT.search('<script type="module" src="/static/js/app.js"></script>')


@pytest.mark.parametrize("path", TEMPLATES + SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_style_attributes(path):
    assert not STYLE_ATTRIBUTE.findall(path.read_text())


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_event_handler_attributes(path):
    assert not EVENT_HANDLER_ATTRIBUTE.findall(path.read_text())


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_inline_scripts(path):
    assert not INLINE_SCRIPT.findall(path.read_text())
