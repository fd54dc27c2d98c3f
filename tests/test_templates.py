"""Pages are drawn from Jinja2 templates with autoescaping: a value never becomes markup."""

from importlib import resources

from xreid.rendering.charts import bar_svg
from xreid.rendering.templating import render


def test_values_are_escaped_and_markup_from_templates_is_kept():
    page = render("interpreter.html.j2", line="<script>alert(1)</script> & 'quoted'", cells=[],
                  bar=bar_svg([("<b>bold</b>", 1.0, "#123456")]))
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#39;quoted&#39;" in page
    assert '<svg class="bar"' in page and "&lt;b&gt;bold&lt;/b&gt; 100 %" in page  # the bar is markup, its label text


def test_the_templates_ship_with_the_package():
    folder = resources.files("xreid.rendering") / "templates"
    names = {p.name for p in folder.iterdir()}
    assert {"report.html.j2", "card.html.j2", "maps.html.j2", "interpreter.html.j2", "analysis.html.j2",
            "pie.svg.j2", "bar.svg.j2", "timeline.svg.j2", "timeline.html.j2", "report.css"} <= names
