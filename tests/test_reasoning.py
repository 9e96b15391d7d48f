"""Reasoning formats: the glaive fork's <output> post-processing and the other formats."""

from __future__ import annotations

import pytest

from scorecheck.errors import UsageError
from scorecheck.reasoning import ReasoningFormat, parse_format


def fork_simple_evals(s: str) -> str:
    """sampler/reflection_sampler.py: the expression, with its bare except returning the whole response."""
    try:
        return s.split("<output>")[1].split("</output>")[0]
    except IndexError:
        return s


def fork_ifeval(s: str) -> str:
    """ifeval/gen_results.py with use_reflection."""
    return s.split("<output>")[1].replace("</output>", "").strip() if "<output>" in s else s


REFLECTION_CASES = [
    # (name, response, literal expected answer, missing_tag)
    ("no tag", "<thinking>x</thinking>\nAnswer: B", "<thinking>x</thinking>\nAnswer: B", True),
    ("truncated", "<thinking>plan</thinking>\n<output>\nThe answer is\nAnswer: C", "\nThe answer is\nAnswer: C", False),
    ("both tags", "<thinking>t</thinking>\n<output>\nAnswer: A\n</output>\n", "\nAnswer: A\n", False),
    ("second output", "<thinking>t</thinking><output>first</output> mid <output>second</output>", "first", False),
    ("second output unclosed", "<output>one <output>two</output>", "one ", False),
    ("close before open", "pre</output>mid<output>Answer: D", "Answer: D", False),
    ("empty output", "<output></output>", "", False),
    ("only close", "text</output>more", "text</output>more", True),
]


@pytest.mark.parametrize("name,s,expected,missing", REFLECTION_CASES, ids=[c[0] for c in REFLECTION_CASES])
def test_reflection_matches_fork_expression(name, s, expected, missing):
    split = parse_format("reflection").apply(s)
    assert split.answer == expected
    assert split.answer == fork_simple_evals(s)
    assert split.missing_tag is missing


def test_reflection_not_stripped_and_reasoning_kept():
    split = parse_format("reflection").apply("<thinking>why</thinking>\n<output>  x  </output>")
    assert split.answer == "  x  "
    assert split.reasoning == "<thinking>why</thinking>\n"


def test_reflection_none_content():
    split = parse_format("reflection").apply(None)
    assert split.answer == ""
    assert split.missing_tag is True


IFEVAL_CASES = [
    ("no tag", "Just text. ", "Just text. ", True),
    ("both tags", "<thinking>t</thinking>\n<output>\n  Hello world.\n</output>\n", "Hello world.", False),
    ("truncated", "<output> partial", "partial", False),
    ("second output", "<output> a </output> b <output> c", "a  b", False),
    ("close before open", "x</output>y<output> z </output>", "z", False),
]


@pytest.mark.parametrize("name,s,expected,missing", IFEVAL_CASES, ids=[c[0] for c in IFEVAL_CASES])
def test_reflection_ifeval_matches_fork_expression(name, s, expected, missing):
    split = parse_format("reflection-ifeval").apply(s)
    assert split.answer == expected
    assert split.answer == fork_ifeval(s)
    assert split.missing_tag is missing


def test_think_closed():
    split = parse_format("think").apply("<think>let me see</think>\n\nAnswer: 4")
    assert split.answer == "Answer: 4"
    assert split.reasoning == "let me see"
    assert split.missing_tag is False


def test_think_unclosed_gives_empty_answer():
    split = parse_format("think").apply("<think>still thinking... Answer: 3")
    assert split.answer == ""
    assert split.reasoning == "<think>still thinking... Answer: 3"
    assert split.missing_tag is False


def test_think_close_without_open_takes_text_after_last_close():
    split = parse_format("think").apply("reasoning here</think>draft</think> Answer: 7")
    assert split.answer == "Answer: 7"
    assert split.reasoning == "reasoning here</think>draft"
    assert split.missing_tag is False


def test_think_no_tags_whole_response_missing():
    split = parse_format("think").apply("Answer: 2")
    assert split.answer == "Answer: 2"
    assert split.reasoning is None
    assert split.missing_tag is True


def test_reasoning_field_reasoning():
    msg = {"content": "Answer: B", "reasoning": "because"}
    split = parse_format("reasoning-field").apply("Answer: B", msg)
    assert (split.answer, split.reasoning, split.missing_tag) == ("Answer: B", "because", False)


def test_reasoning_field_reasoning_content():
    msg = {"content": "Answer: B", "reasoning_content": "older field"}
    split = parse_format("reasoning-field").apply("Answer: B", msg)
    assert (split.answer, split.reasoning, split.missing_tag) == ("Answer: B", "older field", False)


def test_reasoning_field_absent():
    split = parse_format("reasoning-field").apply("Answer: B", {"content": "Answer: B"})
    assert (split.answer, split.reasoning, split.missing_tag) == ("Answer: B", None, True)
    split = parse_format("reasoning-field").apply("Answer: B", None)
    assert split.missing_tag is True


def test_tags_spec():
    fmt = parse_format("tags:<reasoning>,</reasoning>")
    assert fmt == ReasoningFormat("tags", "<reasoning>", "</reasoning>")
    assert str(fmt) == "tags:<reasoning>,</reasoning>"
    split = fmt.apply("<reasoning>r</reasoning> Answer: 1")
    assert (split.answer, split.reasoning, split.missing_tag) == ("Answer: 1", "r", False)
    assert fmt.apply("<reasoning>r").answer == ""
    assert fmt.apply("plain").missing_tag is True
    assert parse_format(" tags: [[ , ]] ") == ReasoningFormat("tags", "[[", "]]")


@pytest.mark.parametrize(
    "spec", ["tags:", "tags:<r>", "tags:<a>,<b>,<c>", "tags:<a>, ", "tags:,</a>", "thinking", "REFLECTION"]
)
def test_bad_specs_raise_usage_error(spec):
    with pytest.raises(UsageError):
        parse_format(spec)


def test_none_keeps_everything():
    s = "<think>x</think><output>y</output>"
    split = parse_format("none").apply(s)
    assert (split.answer, split.reasoning, split.missing_tag) == (s, None, False)
    assert parse_format("none").apply(None).answer == ""


@pytest.mark.parametrize("name", ["none", "reflection", "reflection-ifeval", "think", "reasoning-field"])
def test_names_round_trip(name):
    assert str(parse_format(name)) == name
