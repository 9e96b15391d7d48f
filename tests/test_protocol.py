"""The glaive-2024 profile's strings and sampling, pinned to ../shared/protocol/glaive-2024/ byte for byte."""

from __future__ import annotations

import hashlib

import pytest

from conftest import SHARED
from scorecheck.errors import UsageError
from scorecheck.protocols import GLAIVE_2024, PROFILES, get_profile
from scorecheck.protocols import glaive_2024 as P

PROTOCOL_DIR = SHARED / "protocol" / "glaive-2024"

FILES = {
    "system_reflection.txt": "SYSTEM_REFLECTION",
    "system_reflection_ifeval.txt": "SYSTEM_REFLECTION_IFEVAL",
    "system_default.txt": "SYSTEM_DEFAULT",
    "system_default_ifeval.txt": "SYSTEM_DEFAULT_IFEVAL",
    "prompt_multichoice.txt": "QUERY_TEMPLATE_MULTICHOICE",
    "prompt_math.txt": "QUERY_TEMPLATE_MATH",
    "prompt_gsm8k.txt": "QUERY_TEMPLATE_GSM8K",
    "equality_judge.txt": "EQUALITY_TEMPLATE",
}


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_every_protocol_file_is_covered():
    assert PROTOCOL_DIR.is_dir(), PROTOCOL_DIR
    assert sorted(p.name for p in PROTOCOL_DIR.glob("*.txt")) == sorted(FILES)


@pytest.mark.parametrize("filename,constant", sorted(FILES.items()))
def test_constant_equals_file_by_sha256(filename, constant):
    expected = (PROTOCOL_DIR / filename).read_bytes()
    value = getattr(P, constant)
    assert sha(value.encode("utf-8")) == sha(expected), f"{constant} differs from {filename}"
    assert value == expected.decode("utf-8")


def test_system_prompt_lengths():
    assert len(P.SYSTEM_REFLECTION) == 940
    assert len(P.SYSTEM_REFLECTION_IFEVAL) == 939
    # The IFEval copy has one blank line fewer before </thinking>.
    assert P.SYSTEM_REFLECTION.replace("\n\n\n</thinking>", "\n\n</thinking>") == P.SYSTEM_REFLECTION_IFEVAL
    assert P.SYSTEM_DEFAULT == "You are a helpful assistant."
    assert (
        P.SYSTEM_DEFAULT_IFEVAL
        == "You are a helpful assistant. Provide clear and concise answers to the user's questions."
    )


def test_template_details():
    # the "." after {Question}, the trailing space of the MATH prompt, none on GSM8K's
    assert P.QUERY_TEMPLATE_MULTICHOICE.startswith("{Question}.\n\nOptions:\n\nA) {A}\n")
    assert P.QUERY_TEMPLATE_MULTICHOICE.endswith("format: 'Answer: $option'")
    assert P.QUERY_TEMPLATE_MATH.endswith("problem. ")
    assert P.QUERY_TEMPLATE_GSM8K.startswith("{question}. ")
    assert P.QUERY_TEMPLATE_GSM8K.endswith("problem.")
    filled = P.EQUALITY_TEMPLATE % {"expression1": "18", "expression2": "$18"}
    assert filled.endswith("    Expression 1: 18\n    Expression 2: $18")


def test_answer_patterns():
    assert P.ANSWER_PATTERN_MULTICHOICE == r"(?i)Answer\s*:\s*([A-D])"
    assert P.ANSWER_PATTERN == r"(?i)Answer\s*:\s*([^\n]+)"


def test_profile_sampling():
    prof = get_profile("glaive-2024")
    assert prof is GLAIVE_2024
    assert prof.temperature == 0.0
    assert prof.max_tokens == 6000
    assert prof.extra_body == {"skip_special_tokens": False}
    assert prof.extra_body["skip_special_tokens"] is False
    assert prof.http_400_is_empty_answer is True
    assert prof.reference == "glaive-ai/simple-evals @ 478400f"


def test_profile_system_prompts():
    prof = get_profile("glaive-2024")
    assert prof.system_prompts == {
        "reflection": P.SYSTEM_REFLECTION,
        "default": P.SYSTEM_DEFAULT,
        "reflection-ifeval": P.SYSTEM_REFLECTION_IFEVAL,
        "default-ifeval": P.SYSTEM_DEFAULT_IFEVAL,
    }
    hashes = prof.prompt_hashes()
    assert hashes["reflection"] == sha((PROTOCOL_DIR / "system_reflection.txt").read_bytes())
    assert hashes["default-ifeval"] == sha((PROTOCOL_DIR / "system_default_ifeval.txt").read_bytes())


def test_profile_dict_is_not_shared_with_module_constant():
    # The profile copies EXTRA_BODY; the module's constant stays the protocol's value.
    assert P.EXTRA_BODY == {"skip_special_tokens": False}
    assert GLAIVE_2024.extra_body is not P.EXTRA_BODY


@pytest.mark.parametrize("name", ["glaive-2025", "", "GLAIVE-2024 ", "simple_evals"])
def test_unknown_protocol_raises_usage_error(name):
    with pytest.raises(UsageError) as e:
        get_profile(name)
    assert "unknown protocol" in str(e.value)
    assert "glaive-2024" in str(e.value)  # names the known ones


def test_profiles_registry():
    assert "glaive-2024" in PROFILES
