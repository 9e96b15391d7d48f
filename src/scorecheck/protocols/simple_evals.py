"""Protocol `simple-evals`: OpenAI's simple-evals as frozen in July 2025 (openai/simple-evals @ ee3b031, MIT).

Every string below is protocol data, copied byte for byte from that commit:
- QUERY_TEMPLATE_MULTICHOICE, ANSWER_PATTERN_MULTICHOICE, ANSWER_PATTERN, MULTILINGUAL_ANSWER_PATTERN_TEMPLATE,
  MULTILINGUAL_ANSWER_REGEXES, EQUALITY_TEMPLATE: common.py (the templates are stripped triple-quoted strings there)
- NORMALIZE_RESPONSE, NORMALIZE_EXTRACTED_ANSWER: common.py ``normalize_response`` / ``normalize_extracted_answer``,
  written as the ``str.replace`` pairs those functions apply in order (the latter then ``.strip()``)
- QUERY_TEMPLATE_MATH: math_eval.py ``QUERY_TEMPLATE``
- INSTRUCTION_HUMANEVAL, CODE_PATTERN_HUMANEVAL, SIGNATURE_MARKER: humaneval_eval.py (``instruction``, ``find_code``)
- SYSTEM_DEFAULT (``OPENAI_SYSTEM_MESSAGE_API``), TEMPERATURE, MAX_TOKENS, HTTP_400_TEXT:
  sampler/chat_completion_sampler.py (``ChatCompletionSampler`` defaults and its ``BadRequestError`` branch)
- repeats: simple_evals.py ``get_evals`` (MATH and GPQA ``args.n_repeats or 10``; MMLU 1; HumanEval 5 samples per
  task, pass@1/2/5); the eval classes assert ``n_repeats == 1`` whenever a subset is drawn.

tests/test_protocol_simple_evals.py pins each by sha256 (computed from the upstream files) and against
../shared/protocol/simple-evals/.
"""

from __future__ import annotations

# common.py EQUALITY_TEMPLATE is byte-identical to the fork's (both pinned by sha256 in the tests): one copy.
from scorecheck.protocols.glaive_2024 import EQUALITY_TEMPLATE
from scorecheck.protocols.spec import EvalProtocol, Extraction, Profile

SOURCE = "openai/simple-evals @ ee3b031"

# common.py
QUERY_TEMPLATE_MULTICHOICE = (
    "Answer the following multiple choice question. The last line of your response should be of the following "
    "format: 'Answer: $LETTER' (without quotes) where LETTER is one of ABCD. Think step by step before answering.\n"
    "\n"
    "{Question}\n"
    "\n"
    "A) {A}\n"
    "B) {B}\n"
    "C) {C}\n"
    "D) {D}"
)
ANSWER_PATTERN_MULTICHOICE = r"(?i)Answer[ \t]*:[ \t]*\$?([A-D])\$?"
ANSWER_PATTERN = r"(?i)Answer\s*:\s*([^\n]+)"
# The "[ \t]" holds a real tab (a plain string upstream).
MULTILINGUAL_ANSWER_PATTERN_TEMPLATE = (
    "(?i){}[ \t]*([A-D]|[\u0623-\u062f]|[\u0985]|[\u09ac]|[\u09a1]|[\u09a2]|[\uff21]|[\uff22]|[\uff23]|[\uff24])"
)
# All the different ways "Answer" is written in different languages (the second holds 6 zero-width spaces).
MULTILINGUAL_ANSWER_REGEXES = (
    r"Answer\s*:",
    "Answer\\s*:\u200b\u200b\u200b\u200b\u200b\u200b",
    r"উত্তর\s*:",
    r"उत्तर\s*:",
    "উত্তরঃ",
    r"উত্তর\s*:",
    r"Antwort\s*:",
    r"답변\s*:",
    r"정답\s*:",
    r"답\s*:",
    r"答案\s*：",
    r"答案\s*:",
    r"答\s*：",
    r"答\s*:",
    r"答复\s*：",
    r"答曰\s*：",
    "الإجابة:",
    "الجواب:",
    "إجابة:",
    "الإجابة النهائية:",
    "الإجابة الصحيحة:",
    "الإجابة الصحيحة هي:",
    "الإجابة هي:",
    "الجواب النهائي:",
    r"Respuesta\s*:",
    r"Risposta\s*:",
    r"答え\s*:",
    r"答え\s*：",
    r"回答\s*:",
    r"回答\s*：",
    r"解答\s*:",
    r"Jawaban\s*:",
    r"Réponse\s*:",
    r"Resposta\s*:",
    r"Jibu\s*:",
    r"Idahun\s*:",
    r"Ìdáhùn\s*:",
    r"Idáhùn\s*:",
    r"Àmọ̀nà\s*:",
    r"Àdáhùn\s*:",
    r"Ànúgọ\s*:",
    r"Àṣàyàn\s*:",
)
NORMALIZE_RESPONSE = (
    ("**", ""),
    ("$\\boxed{", ""),
    ("}$", ""),
    ("\\$", ""),
    ("$\\text{", ""),
    ("$", ""),
    ("\\mathrm{", ""),
    ("\\{", ""),
    ("\\text", ""),
    ("\\(", ""),
    ("\\mathbf{", ""),
    ("{", ""),
    ("\\boxed", ""),
)
NORMALIZE_EXTRACTED_ANSWER = (
    # Arabic, Bengali and full-width letters used for A-D
    ("\u0623", " A"),
    ("\u0628", " B"),
    ("\u062c", " C"),
    ("\u062f", " D"),
    ("\u0985", " A"),
    ("\u09ac", " B"),
    ("\u09a1", " C"),
    ("\u09a2", " D"),
    ("\uff21", " A"),
    ("\uff22", " B"),
    ("\uff23", " C"),
    ("\uff24", " D"),
)

# math_eval.py
QUERY_TEMPLATE_MATH = (
    "Solve the following math problem step by step. The last line of your response should be of the form "
    "Answer: $ANSWER (without quotes) where $ANSWER is the answer to the problem.\n"
    "\n"
    "{Question}\n"
    "\n"
    'Remember to put your answer on its own line after "Answer:", and you do not need to use a \\boxed command.'
)

# humaneval_eval.py
INSTRUCTION_HUMANEVAL = (
    "Read the following function signature and docstring, and fully implement the function described. Your "
    "response should only contain the code for this function.\n"
)
CODE_PATTERN_HUMANEVAL = r"```python\n(.*?)```"
SIGNATURE_MARKER = ":\n    "
HUMANEVAL_SAMPLES = 5
HUMANEVAL_KS = (1, 2, 5)
HUMANEVAL_TIMEOUT = 3.0  # evaluate_functional_correctness's default; HumanEval(timeout=120) is never passed on

# sampler/chat_completion_sampler.py
SYSTEM_DEFAULT = "You are a helpful assistant."
TEMPERATURE = 0.5
MAX_TOKENS = 1024
HTTP_400_TEXT = "No response (bad request)."
JUDGE_MODEL = "gpt-4-turbo-preview"  # simple_evals.py: equality_checker = ChatCompletionSampler(model=...)

# simple_evals.py get_evals
REPEATS_MATH = 10
REPEATS_GPQA = 10

_SUBSET = "random.Random(0).sample(examples, n)"
_ONE_REPEAT = "; with a subset, 1 repeat (upstream asserts n_repeats == 1 when num_examples is set)"


def _math(eval_name: str, data_key: str, verified: bool, notes: tuple[str, ...]) -> EvalProtocol:
    return EvalProtocol(
        eval=eval_name,
        source=f"{SOURCE} math_eval.py, common.py, simple_evals.py",
        data_key=data_key,
        subset=_SUBSET + _ONE_REPEAT,
        user_template=QUERY_TEMPLATE_MATH,
        extraction=Extraction(patterns=(ANSWER_PATTERN,), match="first"),
        grader="math-equality",
        repeats=REPEATS_MATH,
        judge_template=EQUALITY_TEMPLATE,
        judge_unparsed="None",
        aggregate="mean over every repeat (examples * n_repeats)",
        byte_verified=verified,
        notes=notes,
    )


_MATH_500_NOTE = (
    "upstream reads math_500_test.csv, which is not in the shared data; scorecheck uses prm800k's "
    "split, whose answers differ in 3 problems and whose row order against upstream's is unverified",
)

EVALS = (
    EvalProtocol(
        eval="mmlu",
        source=f"{SOURCE} mmlu_eval.py, common.py",
        data_key="mmlu",
        subset=_SUBSET,
        user_template=QUERY_TEMPLATE_MULTICHOICE,
        extraction=Extraction(
            patterns=tuple(MULTILINGUAL_ANSWER_PATTERN_TEMPLATE.format(r) for r in MULTILINGUAL_ANSWER_REGEXES),
            match="first",
            normalize_response=NORMALIZE_RESPONSE,
            normalize_answer=NORMALIZE_EXTRACTED_ANSWER,
            strip_answer=True,
        ),
        grader="exact-letter",
        aggregate="mean over questions; per category",
        notes=("English mmlu.csv (EN-US); read with pandas defaults as upstream does",),
    ),
    EvalProtocol(
        eval="gpqa_diamond",
        source=f"{SOURCE} gpqa_eval.py, common.py, simple_evals.py",
        data_key="gpqa_diamond",
        subset="rng = random.Random(0); rng.sample(examples, n) first" + _ONE_REPEAT + "; then examples * n_repeats, "
        "each with its own rng.sample(range(4), 4) permutation in order",
        user_template=QUERY_TEMPLATE_MULTICHOICE,
        extraction=Extraction(patterns=(ANSWER_PATTERN_MULTICHOICE,), match="first"),
        grader="exact-letter",
        repeats=REPEATS_GPQA,
        aggregate="mean over every repeat (each repeat is its own permutation)",
    ),
    _math("math", "math", True, ()),
    _math("math_500", "math500", False, _MATH_500_NOTE),
    EvalProtocol(
        eval="humaneval",
        source=f"{SOURCE} humaneval_eval.py; openai/human-eval check_correctness",
        data_key="humaneval",
        subset="random.Random(0).sample(examples, n); without a subset every problem in file order",
        user_template=INSTRUCTION_HUMANEVAL + "{prompt}",
        extraction=Extraction(
            patterns=(CODE_PATTERN_HUMANEVAL,),
            match="first",
            dotall=True,
            no_match="whole-response",
            cut_before=SIGNATURE_MARKER,
        ),  # fmt: skip
        grader="humaneval-exec",
        exec_timeout_s=HUMANEVAL_TIMEOUT,
        samples=HUMANEVAL_SAMPLES,
        pass_ks=HUMANEVAL_KS,
        aggregate="pass@1 over tasks (mean of each task's 5 samples); pass@2, pass@5",
        notes=(
            f"program = prompt + completion + test + check(entry_point), {HUMANEVAL_TIMEOUT} s timeout",
            "signature stripping keeps answer[answer.find(':\\n    ') + 2:], which drops the first character "
            "when the marker is absent",
        ),  # fmt: skip
    ),
)

PROFILE = Profile(
    name="simple-evals",
    reference=SOURCE,
    description="OpenAI's simple-evals (frozen July 2025): the protocol behind many MMLU/GPQA/MATH/HumanEval tables",
    system_prompts={"default": SYSTEM_DEFAULT},
    temperature=TEMPERATURE,
    max_tokens=MAX_TOKENS,
    http_400_text=HTTP_400_TEXT,
    default_evals=("mmlu", "gpqa_diamond", "math", "humaneval"),
    judge_model=JUDGE_MODEL,
    judge_temperature=TEMPERATURE,
    judge_max_tokens=MAX_TOKENS,
    evals={e.eval: e for e in EVALS},
    aliases={"gpqa": "gpqa_diamond", "math500": "math_500"},
    notes=(
        "no system message unless --system-prompt default (the API models upstream ran use it, with "
        "max_tokens 2048); a response with null content is retried upstream",
    ),  # fmt: skip
)
