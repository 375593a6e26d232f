"""Validation of the model's ranking reply: only known fields, values in range, only shown symbols.

The reply is untrusted. `parse_reply` finds the JSON object, validates it against `LlmReply` (unknown
fields at any level are an error, so a smuggled "position_size" cannot slip through), then drops picks
of symbols the model was not shown and repeated symbols, recording why. A `ReplyError` says briefly
what was wrong, in words fit to send back to the model.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

_SPACES = re.compile(r"\s+")
_FENCE = re.compile(r"```[ \t]*(?:json)?[ \t]*\r?\n?(.*?)```", re.DOTALL | re.IGNORECASE)
_MAX_ERRORS = 3  # pydantic errors quoted in a ReplyError
_MAX_MESSAGE = 300
_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}

Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Note = Annotated[str, Field(min_length=1, max_length=400)]


def _one_line(text: str) -> str:
    spaced = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in text)
    return _SPACES.sub(" ", spaced).strip()


class LlmPick(BaseModel):
    """One candidate the model chose."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    symbol: Annotated[str, Field(min_length=1)]
    rank: Annotated[int, Field(ge=1)]
    score: Fraction
    confidence: Fraction
    rationale: Note
    main_risk: Note

    @field_validator("symbol", mode="before")
    @classmethod
    def _normalise_symbol(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("rank", mode="before")
    @classmethod
    def _whole_float_rank(cls, value: object) -> object:
        # 2.0 is a rank; True is not (bool is an int subclass, so it is checked first).
        if isinstance(value, float) and not isinstance(value, bool) and value.is_integer():
            return int(value)
        return value

    @field_validator("rationale", "main_risk", mode="before")
    @classmethod
    def _single_line(cls, value: object) -> object:
        # The text reaches reports and terminals: no newlines, escapes or invisible characters.
        return _one_line(value) if isinstance(value, str) else value


class LlmReply(BaseModel):
    """The whole reply: the model's picks, best first."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    picks: Annotated[list[LlmPick], Field(min_length=1)]


@dataclass(frozen=True, slots=True)
class Dropped:
    """A pick left out of the ranking, and why."""

    symbol: str
    why: str  # "not a candidate", "duplicate of rank 2", ...


@dataclass(frozen=True, slots=True)
class ParsedReply:
    picks: tuple[LlmPick, ...]  # valid picks ordered by (rank, -score, symbol), renumbered rank 1..n
    dropped: tuple[Dropped, ...]


class ReplyError(ValueError):
    """The reply cannot be used; str(err) is a short, specific message fit to send back to the model."""


class _NotJson(ValueError):
    """JSON that the standard parser accepts but a reply may not contain (NaN, repeated keys)."""


def _reject_constant(name: str) -> object:
    raise _NotJson(f"{name} is not a JSON number; use a number from 0 to 1")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    obj: dict = {}
    for key, value in pairs:
        if key in obj:
            raise _NotJson(f'key "{_one_line(key)[:40]}" appears twice in one object')
        obj[key] = value
    return obj


# strict=False lets a raw newline inside a string through: the text fields are flattened anyway.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_unique_keys, strict=False)


def _loads(text: str) -> object:
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise _NotJson("the JSON is nested too deeply") from None


def _json_object(text: str) -> dict:
    """The reply's JSON object: the whole text, a fenced block, or the outermost {...} amid prose."""
    body = text.strip()
    if not body:
        raise ReplyError('the reply is empty; reply with only the JSON object {"picks": [...]}')
    try:
        found = _loads(body)
    except json.JSONDecodeError:
        fenced = _FENCE.search(body)
        if fenced:
            body = fenced.group(1).strip()
        start, end = body.find("{"), body.rfind("}")
        if start < 0 or end < start:
            raise ReplyError('no JSON object in the reply; reply with only the JSON object {"picks": [...]}') from None
        found = _outermost(body, start, end)
    except _NotJson as err:
        raise ReplyError(f"invalid JSON: {err}") from None
    if not isinstance(found, dict):
        kind = _JSON_KINDS.get(type(found), "value")
        raise ReplyError(f'the reply is a JSON {kind}, not an object; reply with {{"picks": [...]}}')
    return found


def _outermost(body: str, start: int, end: int) -> object:
    try:
        return _loads(body[start : end + 1])
    except _NotJson as err:
        raise ReplyError(f"invalid JSON: {err}") from None
    except json.JSONDecodeError as first:
        try:  # an object followed by prose that itself holds a brace
            return _DECODER.raw_decode(body, start)[0]
        except (json.JSONDecodeError, _NotJson, RecursionError):
            raise ReplyError(f"invalid JSON: {first}") from None


def _structure_error(err: ValidationError) -> ReplyError:
    problems = err.errors(include_url=False, include_input=False)
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'reply'}: {e['msg']}" for e in problems[:_MAX_ERRORS]]
    if len(problems) > _MAX_ERRORS:
        parts.append(f"and {len(problems) - _MAX_ERRORS} more")
    message = "; ".join(parts)
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 1] + "\u2026"
    return ReplyError(message)


def parse_reply(text: str, candidates: Collection[str]) -> ParsedReply:
    """Parse and validate a model's reply against the candidate symbols it was shown.
    Accepts the bare JSON object, or one wrapped in ``` / ```json fences or surrounded by prose (take
    the outermost {...}). Raises ReplyError for: no JSON object, invalid JSON, a structure that fails
    LlmReply (wrong types, values out of range, unknown fields at any level such as a smuggled
    "position_size" — include pydantic's location and message, briefly), or no pick left after
    dropping. Drops (and records) picks whose symbol is not among `candidates` and repeated symbols
    (keeping the best-ranked one)."""
    try:
        reply = LlmReply.model_validate(_json_object(text))
    except ValidationError as err:
        raise _structure_error(err) from None
    shown = {symbol.strip().upper(): symbol for symbol in candidates}
    kept: dict[str, LlmPick] = {}
    dropped: list[Dropped] = []
    for pick in sorted(reply.picks, key=lambda p: (p.rank, -p.score, p.symbol)):
        symbol = shown.get(pick.symbol)
        if symbol is None:
            dropped.append(Dropped(pick.symbol, "not a candidate"))
        elif symbol in kept:
            dropped.append(Dropped(symbol, f"duplicate of rank {kept[symbol].rank}"))
        else:
            kept[symbol] = pick.model_copy(update={"symbol": symbol, "rank": len(kept) + 1})
    if not kept:
        strangers = ", ".join(sorted({_one_line(d.symbol)[:12] for d in dropped})[:5])
        raise ReplyError(
            f"no pick is a candidate ({strangers} are not in the list); choose only symbols from the candidate list"
        )
    return ParsedReply(picks=tuple(kept.values()), dropped=tuple(dropped))
