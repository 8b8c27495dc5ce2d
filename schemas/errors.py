"""Validation errors as text people can act on: which field, and why."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError


def _dotted(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc)


def error_texts(
    exc: ValidationError,
    *,
    whole: str = "(message)",
    limit: int | None = None,
    locate: Callable[[Sequence[Any]], str] | None = None,
    with_input: bool = False,
) -> list[str]:
    """One `field.path: why` per problem; `whole` names a problem of the whole object.

    Beyond `limit` problems, one `and N more`. `locate` renames a location
    (e.g. a setting to its environment variable); `with_input` adds what was
    given, for configuration (never for events, whose values may be personal).
    """
    errors = exc.errors(include_url=False, include_input=with_input)
    shown = errors if limit is None else errors[:limit]
    texts = []
    for err in shown:
        where = (locate(err["loc"]) if locate is not None else _dotted(err["loc"])) or whole
        text = f"{where}: {err['msg']}"
        if with_input and "input" in err:
            text += f" (got {err['input']!r})"
        texts.append(text)
    if limit is not None and len(errors) > limit:
        texts.append(f"and {len(errors) - limit} more")
    return texts
