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
