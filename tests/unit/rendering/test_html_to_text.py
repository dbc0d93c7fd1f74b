"""The plain-text part derived from the HTML reads as a person would write it, links kept."""

from __future__ import annotations

from outreach.rendering.text import html_to_text


def test_paragraphs_and_headings_become_blocks_separated_by_a_blank_line() -> None:
    html = "<h1>Your order is late</h1><p>Hi Sam,</p><p>We're   sorry.\n It's   on its way.</p>"
    assert html_to_text(html) == "Your order is late\n\nHi Sam,\n\nWe're sorry. It's on its way.\n"


def test_links_keep_their_address_after_their_words() -> None:
    html = '<p><a href="https://track.example.com/A-1?a=1&amp;b=2">Track your parcel</a>.</p>'
    assert html_to_text(html) == "Track your parcel (https://track.example.com/A-1?a=1&b=2).\n"


def test_a_link_whose_words_are_its_address_is_not_written_twice() -> None:
    html = (
        '<p><a href="https://example.com/help">https://example.com/help</a> '
        '<a href="tel:+442079460000">+44 20 7946 0000</a> '
        '<a href="mailto:care@example.com">care@example.com</a></p>'
    )
    assert html_to_text(html) == "https://example.com/help +44 20 7946 0000 care@example.com\n"


def test_lists_become_dashes_and_numbers_and_nest() -> None:
    html = "<ul><li>Tea × 2</li><li>Mugs<ol><li>Blue</li><li>Red</li></ol></li></ul><p>Total</p>"
    assert html_to_text(html) == "- Tea × 2\n- Mugs\n  1. Blue\n  2. Red\n\nTotal\n"


def test_the_head_styles_scripts_and_hidden_text_are_left_out() -> None:
    html = (
        "<html><head><title>T</title><style>p{color:red}</style></head><body>"
        '<div style="display: none">preview text</div><span hidden>x</span>'
        "<script>alert(1)</script><p>Visible</p></body></html>"
    )
    assert html_to_text(html) == "Visible\n"


def test_escaped_customer_data_comes_back_as_the_text_they_typed() -> None:
    html = "<p>Hi &lt;b&gt;Sam&lt;/b&gt; &amp; {{ 7*7 }}</p>"
    assert html_to_text(html) == "Hi <b>Sam</b> & {{ 7*7 }}\n"


def test_arabic_text_and_table_cells_are_kept_in_order() -> None:
    html = '<p dir="rtl">طلبك <a href="https://t.example/1">تتبّع الشحنة</a></p><table><tr><td>شاي</td><td>٢</td></tr></table>'
    assert html_to_text(html) == "طلبك تتبّع الشحنة (https://t.example/1)\n\nشاي  ٢\n"


def test_a_rule_and_line_breaks_are_kept() -> None:
    assert html_to_text("<p>One<br>Two</p><hr><p>Three</p>") == "One\nTwo\n\n" + "—" * 20 + "\n\nThree\n"
