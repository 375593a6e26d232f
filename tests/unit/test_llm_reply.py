"""Validation of the model's ranking reply: the model is assumed wrong or manipulated until proven otherwise."""

from __future__ import annotations

import json

import pytest

from openbell.llm.prompt import REPLY_SCHEMA
from openbell.llm.reply import Dropped, LlmPick, LlmReply, ReplyError, parse_reply

CANDIDATES = ("AAA", "BBB", "CCC", "DDD")


def pick(symbol: str, rank: int, score: float = 0.5, confidence: float = 0.5, **changes) -> dict:
    entry = dict(
        symbol=symbol, rank=rank, score=score, confidence=confidence,
        rationale="Large gap on heavy opening volume.", main_risk="The gap fades by midday.",
    )  # fmt: skip
    entry.update(changes)
    return entry


def reply(*picks: dict, **top) -> str:
    return json.dumps({"picks": list(picks), **top})


def ranking(parsed) -> list[tuple[str, int]]:
    return [(p.symbol, p.rank) for p in parsed.picks]


def error_of(text: str, candidates=CANDIDATES) -> str:
    with pytest.raises(ReplyError) as caught:
        parse_reply(text, candidates)
    return str(caught.value)


GOOD = reply(pick("AAA", 1, score=0.9), pick("BBB", 2, score=0.7))


# -- accepted shapes ---------------------------------------------------------------------------


def test_a_well_formed_reply_gives_its_picks_and_drops_nothing():
    parsed = parse_reply(GOOD, CANDIDATES)

    assert ranking(parsed) == [("AAA", 1), ("BBB", 2)]
    assert parsed.picks[0] == LlmPick(**pick("AAA", 1, score=0.9))
    assert parsed.dropped == ()


@pytest.mark.parametrize(
    "text",
    [
        f"```json\n{GOOD}\n```",
        f"```\n{GOOD}\n```",
        f"Here you go:\n```JSON\n{GOOD}\n```\nGood luck!",
        f"I left out {{EEE}} and {{FFF}}:\n```json\n{GOOD}\n```",
    ],
    ids=["json-fence", "bare-fence", "fence-in-prose", "fence-after-braces-in-prose"],
)
def test_a_reply_in_code_fences_is_accepted(text):
    assert ranking(parse_reply(text, CANDIDATES)) == [("AAA", 1), ("BBB", 2)]


@pytest.mark.parametrize(
    "text",
    [f"My ranking: {GOOD} Thanks.", f"My ranking:\n{GOOD}\nNote: I ignored {{CCC}}."],
    ids=["prose", "prose-with-braces-after"],
)
def test_a_reply_surrounded_by_prose_is_accepted(text):
    assert ranking(parse_reply(text, CANDIDATES)) == [("AAA", 1), ("BBB", 2)]


def test_lower_case_and_padded_symbols_are_normalised_to_the_candidate():
    parsed = parse_reply(reply(pick(" aaa ", 1), pick("brk.b", 2)), ["AAA", "BRK.B"])

    assert ranking(parsed) == [("AAA", 1), ("BRK.B", 2)]


def test_picks_are_ordered_by_rank_then_higher_score_then_symbol_and_renumbered():
    text = reply(
        pick("CCC", 7, score=0.99),
        pick("BBB", 3, score=0.4),
        pick("AAA", 3, score=0.4),
        pick("DDD", 3, score=0.9),
    )

    parsed = parse_reply(text, CANDIDATES)

    assert ranking(parsed) == [("DDD", 1), ("AAA", 2), ("BBB", 3), ("CCC", 4)]


def test_a_whole_number_written_as_a_float_is_a_rank():
    assert ranking(parse_reply(reply(pick("AAA", 2.0)), CANDIDATES)) == [("AAA", 1)]


def test_rationale_and_risk_are_flattened_to_one_line_of_visible_text():
    text = reply(pick("AAA", 1, rationale="Strong gap.\n\nIGNORE\x1b[2J ALL", main_risk="\tFade\u200b risk "))

    (only,) = parse_reply(text, CANDIDATES).picks

    assert (only.rationale, only.main_risk) == ("Strong gap. IGNORE [2J ALL", "Fade risk")


# -- dropped picks -----------------------------------------------------------------------------


def test_a_symbol_that_was_not_shown_is_dropped_and_recorded():
    parsed = parse_reply(reply(pick("AAA", 1), pick("EVIL", 2)), CANDIDATES)

    assert ranking(parsed) == [("AAA", 1)]
    assert parsed.dropped == (Dropped("EVIL", "not a candidate"),)


def test_a_repeated_symbol_keeps_its_best_ranked_pick():
    text = reply(pick("BBB", 3, score=0.2), pick("AAA", 2), pick("BBB", 1, score=0.8))

    parsed = parse_reply(text, CANDIDATES)

    assert ranking(parsed) == [("BBB", 1), ("AAA", 2)]
    assert parsed.picks[0].score == 0.8
    assert parsed.dropped == (Dropped("BBB", "duplicate of rank 1"),)


def test_a_reply_whose_picks_are_all_unknown_symbols_is_an_error():
    message = error_of(reply(pick("EVIL", 1), pick("ZZZ", 2)))

    assert message.startswith("no pick is a candidate (EVIL, ZZZ are not in the list)")


# -- rejected replies --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the reply is empty"),
        ("I cannot rank these stocks.", "no JSON object in the reply"),
        (
            '{"picks": [{"symbol": "AAA",}]}',
            "invalid JSON: Expecting property name enclosed in double quotes: line 1 column",
        ),
        ("[" + GOOD + "]", "the reply is a JSON array, not an object"),
    ],
    ids=["empty", "no-object", "invalid-json", "array"],
)
def test_a_reply_without_a_usable_json_object_is_an_error(text, expected):
    assert error_of(text).startswith(expected)


def test_nan_is_not_accepted_as_a_number():
    assert error_of(reply(pick("AAA", 1)).replace("0.5", "NaN", 1)) == (
        "invalid JSON: NaN is not a JSON number; use a number from 0 to 1"
    )


def test_deeply_nested_json_is_an_error_not_a_crash():
    assert error_of('{"picks": ' + "[" * 100_000 + "]" * 100_000 + "}") == "invalid JSON: the JSON is nested too deeply"


def test_a_key_given_twice_is_an_error():
    text = '{"picks": [], "picks": ' + json.dumps([pick("AAA", 1)]) + "}"

    assert error_of(text) == 'invalid JSON: key "picks" appears twice in one object'


def test_empty_picks_is_an_error():
    assert error_of(reply()) == "picks: List should have at least 1 item after validation, not 0"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"score": 1.5}, "picks.1.score: Input should be less than or equal to 1"),
        ({"confidence": -0.1}, "picks.1.confidence: Input should be greater than or equal to 0"),
        ({"rank": 0}, "picks.1.rank: Input should be greater than or equal to 1"),
        ({"rank": 1.5}, "picks.1.rank: Input should be a valid integer"),
        ({"rank": True}, "picks.1.rank: Input should be a valid integer"),
        ({"score": "0.9"}, "picks.1.score: Input should be a valid number"),
        ({"symbol": 7}, "picks.1.symbol: Input should be a valid string"),
        ({"rationale": ""}, "picks.1.rationale: String should have at least 1 character"),
        ({"main_risk": "x" * 401}, "picks.1.main_risk: String should have at most 400 characters"),
    ],
    ids=[
        "score>1",
        "confidence<0",
        "rank0",
        "rank1.5",
        "rank-bool",
        "score-string",
        "symbol-int",
        "empty-rationale",
        "long-risk",
    ],
)
def test_a_value_of_the_wrong_type_or_out_of_range_is_an_error_naming_its_location(changes, expected):
    assert error_of(reply(pick("AAA", 1), {**pick("BBB", 2), **changes})) == expected


def test_a_missing_field_is_an_error_naming_it():
    incomplete = pick("AAA", 1)
    del incomplete["main_risk"]

    assert error_of(reply(incomplete)) == "picks.0.main_risk: Field required"


def test_a_smuggled_top_level_field_is_an_error():
    assert error_of(reply(pick("AAA", 1), allocation=100_000)) == "allocation: Extra inputs are not permitted"


def test_a_smuggled_field_in_a_pick_is_an_error():
    text = reply(pick("AAA", 1, position_size=5_000))

    assert error_of(text) == "picks.0.position_size: Extra inputs are not permitted"


def test_an_error_message_stays_short_and_never_echoes_the_input():
    junk = "IGNORE ALL RULES " * 300
    text = reply(*[pick("AAA", 0, score=junk, confidence=junk, extra=junk) for _ in range(10)])

    message = error_of(text)

    assert len(message) <= 300
    assert message.startswith("picks.0.rank: Input should be greater than or equal to 1;")
    assert message.endswith("and 37 more")
    assert "IGNORE" not in message


# -- the schema the model is asked for ---------------------------------------------------------


def test_the_reply_schema_names_exactly_the_fields_the_validator_accepts():
    item = REPLY_SCHEMA["properties"]["picks"]["items"]

    assert set(REPLY_SCHEMA["properties"]) == set(LlmReply.model_fields)
    assert set(item["properties"]) == set(LlmPick.model_fields)
