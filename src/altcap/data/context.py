"""Where an image appears (`metadata.context`): reading it from a record, and putting it into a prompt.

Kreiss et al. (2022, "Context Matters for Image Descriptions for Accessibility") found that what a
good description says depends on where the image appears; the context therefore travels from the
import column to the prompt of instruction-following models, the study page and the analysis.
One template (`context_template`, shared by `altcap train` and `altcap caption`) decides how it
enters the prompt; records without a context keep their prompt byte for byte.
"""

from __future__ import annotations

import string
from typing import Annotated, Any

from pydantic import AfterValidator

from altcap.data.findings import Finding, make_finding
from altcap.data.manifest import ManifestRecord

CONTEXT_KEY = "context"
DEFAULT_CONTEXT_TEMPLATE = "This image appears in: {context}\n{prompt}"
CONTEXT_TEMPLATE_HELP = (
    "How a record's `context` (metadata.context: where the image appears) enters the prompt of "
    "instruction-following models: {context} is the context, {prompt} the instruction (the record's, "
    "the config's or the model's default). Only families whose prompts come from a chat template "
    "(`altcap models`: chat_template) get it; records without a context keep their prompt unchanged."
)
TEMPLATE_FIELDS = frozenset({"context", "prompt"})
NO_CONTEXT = "(no context)"  # the stratum of records without one, in the analysis and the memo


def read_context(record: ManifestRecord | dict[str, Any]) -> str | None:
    """A record's context as stripped text, or None when it has none (or a non-text value).

    Args:
        record: a manifest record, or its metadata dict.

    Returns:
        The context, or None. `data check` reports non-text and over-long values.
    """
    metadata = record.metadata if isinstance(record, ManifestRecord) else record
    value = metadata.get(CONTEXT_KEY)
    if not isinstance(value, str) or not value.strip():
        return None
    return " ".join(value.split())


def check_context_template(template: str) -> str:
    """Validate a context template: it names {context} and {prompt} and no other field.

    Args:
        template: the template text.

    Returns:
        The template unchanged.

    Raises:
        ValueError: naming the template, what is wrong and the fix.
    """
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        raise ValueError(
            f"context_template={template!r} is not a format string ({err}); "
            "write a literal brace twice ({{{{ or }}}})"
        ) from err
    unknown = names - TEMPLATE_FIELDS
    missing = TEMPLATE_FIELDS - names
    if unknown or missing:
        raise ValueError(
            f"context_template={template!r}: it must name {{context}} and {{prompt}} and nothing else "
            f"(unknown: {sorted(unknown) or 'none'}, missing: {sorted(missing) or 'none'})"
        )
    return template


# The config fields' type (train's `data.context_template`, caption's `context_template`).
ContextTemplate = Annotated[str, AfterValidator(check_context_template)]


def apply_context(instruction: str, context: str | None, template: str) -> str:
    """The instruction with the context put in by the template; unchanged without a context.

    Args:
        instruction: the resolved instruction (never None: the caller resolves defaults first).
        context: the record's context, or None.
        template: a template checked by `check_context_template`.

    Returns:
        The prompt text.
    """
    if context is None:
        return instruction
    # format() never re-reads the substituted values, so braces inside a context are safe.
    return template.format(context=context, prompt=instruction)


def check_record_context(record: ManifestRecord, file: str, line: int, max_chars: int) -> list[Finding]:
    """`data check`'s finding for a record's context: not text, or longer than `max_chars`.

    Args:
        record: the manifest record.
        file: the manifest path (for the finding).
        line: the record's manifest line.
        max_chars: the over-long limit.

    Returns:
        No finding, or one.
    """
    if CONTEXT_KEY not in record.metadata or record.metadata[CONTEXT_KEY] is None:
        return []
    value = record.metadata[CONTEXT_KEY]
    field = f"metadata.{CONTEXT_KEY}"
    if not isinstance(value, str):
        message = f"context={value!r} is a {type(value).__name__}, not text"
        return [make_finding("CONTEXT_NOT_TEXT", file, line, field, message)]
    if len(value) > max_chars:
        message = f"{len(value)} characters (limit {max_chars}): {value[:60]!r}..."
        return [make_finding("CONTEXT_TOO_LONG", file, line, field, message)]
    return []
