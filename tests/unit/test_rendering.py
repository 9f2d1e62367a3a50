"""Model output becomes safe HTML."""

import re
from pathlib import Path

import nh3

from realtime import rendering
from realtime.rendering import render_markdown

HIGHLIGHT_CSS = Path(__file__).resolve().parents[2] / "static" / "css" / "highlight.css"


def test_markdown_is_rendered():
    html = render_markdown("**bold** and `code`\n\n```python\nprint(1)\n```")
    assert "<strong>bold</strong>" in html
    assert '<pre><code class="language-python"><span class="hl-nb">print</span>' in html


def test_raw_html_and_scripts_are_escaped():
    html = render_markdown("<script>alert(1)</script><img src=x onerror=alert(1)>")
    assert "<script" not in html and "<img" not in html


def test_javascript_links_are_removed():
    html = render_markdown("[click](javascript:alert(1)) [ok](https://example.com)")
    assert 'href="javascript:' not in html
    assert 'href="https://example.com"' in html
    assert 'rel="noopener noreferrer nofollow"' in html


def test_table_alignment_is_a_class_not_an_inline_style():
    html = render_markdown("| a | b |\n|:-|-:|\n| 1 | 2 |")
    assert "style=" not in html
    assert '<th class="align-left">a</th>' in html and '<td class="align-right">2</td>' in html


def test_a_code_block_keeps_its_language_class():
    assert '<code class="language-js">' in render_markdown("```js\nx\n```")


def test_code_in_a_known_language_is_highlighted_with_token_classes():
    html = render_markdown('```python\ndef f():\n    return "<b>"  # done\n```')
    assert '<span class="hl-k">def</span>' in html
    assert '<span class="hl-nf">f</span>' in html
    assert '<span class="hl-s2">"&lt;b&gt;"</span>' in html
    assert '<span class="hl-c1"># done</span>' in html
    assert "style=" not in html


def test_code_without_or_with_an_unknown_language_stays_plain():
    assert render_markdown("```\nx = 1\n```") == "<pre><code>x = 1\n</code></pre>\n"
    html = render_markdown("```nosuchlanguage\n<i>x</i>\n```")
    assert '<code class="language-nosuchlanguage">&lt;i&gt;x&lt;/i&gt;' in html
    assert "<span" not in html


def test_very_long_code_is_not_highlighted():
    code = "x = 1\n" * (rendering.HIGHLIGHT_MAX_CHARS // 6 + 1)
    assert "<span" not in render_markdown(f"```python\n{code}```")


def test_the_sanitizer_keeps_only_token_classes_on_spans():
    dirty = '<span class="hl-k evil">a</span><span class="evil">b</span><span onclick="x">c</span>'
    clean = nh3.clean(
        dirty,
        tags=rendering._ALLOWED_TAGS,
        attributes=rendering._ALLOWED_ATTRIBUTES,
        attribute_filter=rendering._allowed_class,
    )
    assert clean == '<span class="hl-k">a</span><span>b</span><span>c</span>'


def test_every_class_emitted_is_allowed_and_styled_in_both_themes():
    samples = {
        "python": "import os\n@dec\nclass A(B):\n    x: int = 0x1F  # c\n    s = f'{x!r}'\n",
        "js": "const a = /re/g; async function f() { return `t${a}`; } // c\n",
        "bash": 'for f in *.py; do echo "$f" | grep -v x; done\n',
        "diff": "--- a\n+++ b\n@@ -1 +1 @@\n-old\n+new\n",
        "json": '{"a": [1, true, null]}\n',
    }
    css = HIGHLIGHT_CSS.read_text()
    light, dark = css.split("@media (prefers-color-scheme: dark)")
    for language, code in samples.items():
        html = render_markdown(f"```{language}\n{code}```")
        classes = {c for attr in re.findall(r'<span class="([^"]+)"', html) for c in attr.split()}
        assert classes, language
        assert classes <= rendering.TOKEN_CLASSES, language
        for cls in classes - {"hl-w", "hl-n", "hl-p", "hl-o", "hl-x"}:
            # The plainest tokens may be left at the text colour by a style.
            assert f".{cls} " in light or f".{cls} " in dark, (language, cls)


def test_an_image_shows_its_alt_text_and_a_link_but_loads_nothing():
    html = render_markdown('See ![A *red* cat](https://example.com/cat.png "Cat") here')
    assert "<img" not in html
    assert (
        'See A red cat (<a href="https://example.com/cat.png" title="Cat"'
        ' rel="noopener noreferrer nofollow">image</a>) here'
    ) in html


def test_an_image_without_alt_text_is_still_a_link():
    html = render_markdown("![](https://example.com/x.png)")
    link = '<a href="https://example.com/x.png" rel="noopener noreferrer nofollow">image</a>'
    assert link in html


def test_a_linked_image_keeps_one_link_with_the_alt_text():
    html = render_markdown("[![build passing](https://ci.example/b.svg)](https://ci.example/)")
    assert "<img" not in html and html.count("<a ") == 1
    assert ">build passing (image)</a>" in html


def test_an_image_alt_text_is_escaped_and_a_bad_url_is_not_a_link():
    html = render_markdown("![<script>x</script>](https://e.com/a.png) ![x](javascript:alert(1))")
    assert "<script" not in html and 'href="javascript:' not in html
