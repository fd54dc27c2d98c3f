"""The template engine every page is drawn with: Jinja2, templates under ``templates/``,
autoescaping on (every value is HTML-escaped unless it is ``Markup`` another template made),
undefined names an error."""

from __future__ import annotations

from functools import lru_cache

from markupsafe import Markup


@lru_cache(maxsize=1)
def environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined

    return Environment(loader=PackageLoader("xreid.rendering", "templates"), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(template: str, **context) -> Markup:
    """``template`` rendered with ``context``, as markup other templates embed as is."""
    return Markup(environment().get_template(template).render(**context))
