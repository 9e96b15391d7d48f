"""Protocol `reference`: the benchmarks' own reference scorers, only where one exists.

- IFEval: Google's current instruction_following_eval (google-research/google-research, instruction_following_eval/:
  evaluation_lib.py, instructions.py, data/input_data.jsonl), strict and loose, with langdetect seeded and
  non-letter letter_frequency targets kept (scorecheck.grading.ifeval; PROTOCOL.md, "Profile reference").

Nothing else is defined under this name. HumanEval's reference (openai/human-eval) prescribes execution, not a chat
prompt, and no published source gives one; MMLU, GPQA, MATH and GSM8K have no reference scorer beyond the harnesses
that already have profiles (glaive-2024, simple-evals). The reference scorers prescribe no sampling either: greedy
with the glaive budget (temperature 0, max_tokens 6000) and no vLLM-only extra body keeps a reference run
comparable with a glaive-2024 one sent with ``--extra-body '{}'``.
"""

from __future__ import annotations

from scorecheck.protocols.spec import EvalProtocol, Extraction, Profile

SOURCE = "google-research/google-research instruction_following_eval"
TEMPERATURE = 0.0
MAX_TOKENS = 6000

EVALS = (
    EvalProtocol(
        eval="ifeval",
        source=f"{SOURCE} (evaluation_lib.py, instructions.py, data/input_data.jsonl)",
        data_key="ifeval",
        subset="random.Random(0).sample(examples, n) (Google's tools cannot subset)",
        user_template="{prompt}",
        extraction=Extraction(patterns=(), no_match="whole-response"),
        grader="ifeval-reference",
        aggregate="mean of prompt-strict, instruction-strict, prompt-loose, instruction-loose",
        notes=(
            "Google's current input file (541 prompts; key 2785's text differs from the glaive fork's copy)",
            "langdetect seeded (DetectorFactory.seed = 0)",
        ),  # fmt: skip
    ),
)

PROFILE = Profile(
    name="reference",
    reference=SOURCE,
    description="the benchmarks' own reference scorers: IFEval with Google's checker",
    system_prompts={},
    temperature=TEMPERATURE,
    max_tokens=MAX_TOKENS,
    default_evals=("ifeval",),
    evals={e.eval: e for e in EVALS},
)
