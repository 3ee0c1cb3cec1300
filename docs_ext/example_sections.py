"""Griffe extension for the docs build: read the Google-style ``Example:`` heading as an examples section.

xreplay's docstrings title their doctests ``Example:``; griffe recognises
only ``Examples:`` as the section that renders ``>>>`` lines as code, and
reads the singular as an admonition of plain Markdown.
"""

import re

from griffe import Extension, Object

_HEADING = re.compile(r"^(\s*)Example:\s*$", flags=re.M)


class ExampleSections(Extension):
    """Rename ``Example:`` headings to ``Examples:`` in every loaded docstring."""

    def on_instance(self, *, obj: Object, **kwargs: object) -> None:
        """Rewrite the heading of ``obj``'s docstring, if it has one."""
        if obj.docstring is not None:
            obj.docstring.value = _HEADING.sub(r"\1Examples:", obj.docstring.value)
