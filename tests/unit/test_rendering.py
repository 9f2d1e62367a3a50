"""Model output becomes safe HTML."""

from realtime.rendering import render_markdown


def test_markdown_is_rendered():
    html = render_markdown("**bold** and `code`\n\n```python\nprint(1)\n```")
    assert "<strong>bold</strong>" in html
    assert '<pre><code class="language-python">print(1)' in html


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
