"""Protocol profiles: which prompts, sampling and grading rules a run reproduces.

A profile is the named set of facts that makes a score comparable to a published one. The type is in ``spec.py``;
each profile is one data module of this package with its source cited there: ``glaive_2024.py``,
``simple_evals.py``, ``reference.py``. docs/protocols.md says how to add one.
"""

from __future__ import annotations

from scorecheck.errors import UsageError
from scorecheck.protocols import glaive_2024, reference, simple_evals
from scorecheck.protocols.spec import EvalProtocol, Extraction, Profile

__all__ = ["GLAIVE_2024", "PROFILES", "REFERENCE", "SIMPLE_EVALS", "EvalProtocol", "Extraction", "Profile",
           "eval_protocol", "get_profile"]  # fmt: skip

GLAIVE_2024 = glaive_2024.PROFILE
SIMPLE_EVALS = simple_evals.PROFILE
REFERENCE = reference.PROFILE

PROFILES: dict[str, Profile] = {p.name: p for p in (GLAIVE_2024, SIMPLE_EVALS, REFERENCE)}
DEFAULT_PROFILE = GLAIVE_2024


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise UsageError(f"unknown protocol {name!r}; known: {', '.join(sorted(PROFILES))}") from None


def eval_protocol(profile: Profile | str, eval_name: str) -> EvalProtocol:
    """``eval_name``'s protocol under ``profile``; a one-line error naming the profiles that define it otherwise."""
    p = get_profile(profile) if isinstance(profile, str) else profile
    return p.eval_protocol(eval_name, PROFILES)
