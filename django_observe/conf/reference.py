"""The configuration reference (docs/configuration.md), generated from the option metadata alone."""

from __future__ import annotations

import json

from .options import option_fields

__all__ = ["reference_markdown"]


def reference_markdown() -> str:
    """The configuration reference table in Markdown, one row per option in declaration order."""
    rows = [
        "| Setting | Where | Default | Meaning |",
        "| --- | --- | --- | --- |",
    ]
    for field in option_fields():
        meta = field.metadata
        where = "top-level setting" if meta["top_level"] else "`DJANGO_OBSERVE` key"
        if meta["default_doc"] is not None:
            default = meta["default_doc"]
        elif meta["default"] is None:
            default = "none"
        else:
            default = f"`{json.dumps(meta['default'])}`"
        doc = meta["doc"]
        accepted = getattr(meta["parse"], "accepted", None)
        if accepted:
            doc += " Accepted: " + ", ".join(f"`{a}`" for a in accepted) + "."
        rows.append(f"| `{field.name.upper()}` | {where} | {_cell(default)} | {_cell(doc)} |")
    return "\n".join(rows) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
