"""Protocol `glaive-2024`: the seed's table (Reflection 70B vs Llama 3.1 70B, September 2024).

Every string below is protocol data, copied byte for byte from glaive-ai/simple-evals @ 478400f (MIT):
- SYSTEM_REFLECTION: sampler/reflection_sampler.py `REFLECTION_SYSTEM_MESSAGE` (940 characters)
- SYSTEM_REFLECTION_IFEVAL: ifeval/gen_results.py `REFLECTION_SYSTEM_MESSAGE` (939 characters)
- SYSTEM_DEFAULT: sampler/chat_completion_sampler.py `OPENAI_SYSTEM_MESSAGE_API`
- SYSTEM_DEFAULT_IFEVAL: ifeval/gen_results.py `GENERIC_SYSTEM_MESSAGE`
- QUERY_TEMPLATE_MULTICHOICE: common.py (MMLU and GPQA; note the "." after {Question})
- QUERY_TEMPLATE_MATH: math_eval.py (note the trailing space)
- QUERY_TEMPLATE_GSM8K: gsm_eval.py
- EQUALITY_TEMPLATE: common.py (%(expression1)s = gold, %(expression2)s = extracted)
- ANSWER_PATTERN_MULTICHOICE, ANSWER_PATTERN: common.py
- INSTRUCTION_HUMANEVAL, CODE_PATTERN_HUMANEVAL, HUMANEVAL_TIMEOUT: humaneval_eval.py

tests/test_protocol.py checks each against ../shared/protocol/glaive-2024/ by sha256.

``PROFILE`` (the end of this module) puts these strings together with the rules of each eval the fork ran.
"""

from __future__ import annotations

from scorecheck.protocols.spec import EvalProtocol, Extraction, Profile

# system_reflection.txt
SYSTEM_REFLECTION = (
    "You are a world-class AI system capable of complex reasoning and reflection. You respond to all questions in the following way-\n"
    "<thinking>\n"
    "In this section you understand the problem and develop a plan to solve the problem.\n"
    "\n"
    "For easy problems-\n"
    "Make a simple plan and use COT\n"
    "\n"
    "For moderate to hard problems-\n"
    "1. Devise a step-by-step plan to solve the problem. (don't actually start solving yet, just make a plan)\n"
    "2. Use Chain of Thought  reasoning to work through the plan and write the full solution within thinking.\n"
    "\n"
    "You can use <reflection> </reflection> tags whenever you execute a complex step to verify if your reasoning is correct and if not correct it.\n"
    "\n"
    "\n"
    "</thinking>\n"
    "\n"
    "<output>\n"
    "In this section, provide the complete answer for the user based on your thinking process. Do not refer to the thinking tag. Include all relevant information and keep the response somewhat verbose, the user will not see what is in the thinking tag.\n"
    "</output>"
)

# system_reflection_ifeval.txt
SYSTEM_REFLECTION_IFEVAL = (
    "You are a world-class AI system capable of complex reasoning and reflection. You respond to all questions in the following way-\n"
    "<thinking>\n"
    "In this section you understand the problem and develop a plan to solve the problem.\n"
    "\n"
    "For easy problems-\n"
    "Make a simple plan and use COT\n"
    "\n"
    "For moderate to hard problems-\n"
    "1. Devise a step-by-step plan to solve the problem. (don't actually start solving yet, just make a plan)\n"
    "2. Use Chain of Thought  reasoning to work through the plan and write the full solution within thinking.\n"
    "\n"
    "You can use <reflection> </reflection> tags whenever you execute a complex step to verify if your reasoning is correct and if not correct it.\n"
    "\n"
    "</thinking>\n"
    "\n"
    "<output>\n"
    "In this section, provide the complete answer for the user based on your thinking process. Do not refer to the thinking tag. Include all relevant information and keep the response somewhat verbose, the user will not see what is in the thinking tag.\n"
    "</output>"
)

# system_default.txt
SYSTEM_DEFAULT = "You are a helpful assistant."

# system_default_ifeval.txt
SYSTEM_DEFAULT_IFEVAL = "You are a helpful assistant. Provide clear and concise answers to the user's questions."

# prompt_multichoice.txt
QUERY_TEMPLATE_MULTICHOICE = (
    "{Question}.\n"
    "\n"
    "Options:\n"
    "\n"
    "A) {A}\n"
    "B) {B}\n"
    "C) {C}\n"
    "D) {D}\n"
    "The last line of your response should be of the following format: 'Answer: $option'"
)

# prompt_math.txt
QUERY_TEMPLATE_MATH = "{Question}. The last line of your response should be of the form Answer: $ANSWER (without quotes) where $ANSWER is the answer to the problem. "

# prompt_gsm8k.txt
QUERY_TEMPLATE_GSM8K = "{question}. The last line of your response should be of the form Answer: $ANSWER (without quotes) where $ANSWER is the answer to the problem."

# equality_judge.txt
EQUALITY_TEMPLATE = (
    "Look at the following two expressions (answers to a math problem) and judge whether they are equivalent. Only perform trivial simplifications\n"
    "\n"
    "Examples:\n"
    "\n"
    "    Expression 1: $2x+3$\n"
    "    Expression 2: $3+2x$\n"
    "\n"
    "Yes\n"
    "\n"
    "    Expression 1: 3/2\n"
    "    Expression 2: 1.5\n"
    "\n"
    "Yes\n"
    "\n"
    "    Expression 1: $x^2+2x+1$\n"
    "    Expression 2: $y^2+2y+1$\n"
    "\n"
    "No\n"
    "\n"
    "    Expression 1: $x^2+2x+1$\n"
    "    Expression 2: $(x+1)^2$\n"
    "\n"
    "Yes\n"
    "\n"
    "    Expression 1: 3245/5\n"
    "    Expression 2: 649\n"
    "\n"
    "No\n"
    "(these are actually equal, don't mark them equivalent if you need to do nontrivial simplifications)\n"
    "\n"
    "    Expression 1: 2/(-3)\n"
    "    Expression 2: -2/3\n"
    "\n"
    "Yes\n"
    "(trivial simplifications are allowed)\n"
    "\n"
    "    Expression 1: 72 degrees\n"
    "    Expression 2: 72\n"
    "\n"
    "Yes\n"
    "(give benefit of the doubt to units)\n"
    "\n"
    "    Expression 1: 64\n"
    "    Expression 2: 64 square feet\n"
    "\n"
    "Yes\n"
    "(give benefit of the doubt to units)\n"
    "\n"
    "---\n"
    "\n"
    "YOUR TASK\n"
    "\n"
    "\n"
    'Respond with only "Yes" or "No" (without quotes). Do not include a rationale.\n'
    "\n"
    "    Expression 1: %(expression1)s\n"
    "    Expression 2: %(expression2)s"
)
# common.py
ANSWER_PATTERN_MULTICHOICE = r"(?i)Answer\s*:\s*([A-D])"
ANSWER_PATTERN = r"(?i)Answer\s*:\s*([^\n]+)"

# Sampling of the fork's ChatCompletionSampler (sampler/reflection_sampler.py) for the evaluated model.
TEMPERATURE = 0.0
MAX_TOKENS = 6000
EXTRA_BODY = {"skip_special_tokens": False}

# Sampling of the equality checker (sampler/chat_completion_sampler.py defaults, no system message).
JUDGE_MODEL = "gpt-4-turbo-preview"
JUDGE_TEMPERATURE = 0.5
JUDGE_MAX_TOKENS = 1024

# HumanEval (humaneval_eval.py): the instruction put before each problem's prompt (one user message), the code
# extraction (first match, DOTALL; no match: the whole response), and the execution timeout of openai/human-eval's
# check_correctness as the fork called it (evaluate_functional_correctness's default, 3.0 s). One sample per task.
INSTRUCTION_HUMANEVAL = "Complete the following code snippet, and always put python code in ```python markdown block. "
CODE_PATTERN_HUMANEVAL = r"```python\n(.*?)```"
HUMANEVAL_TIMEOUT = 3.0

SOURCE = "glaive-ai/simple-evals @ 478400f"
FORK_SUBSET = "random.Random(0).sample(examples, n)"
SUBSET_NOT_IN_FORK = FORK_SUBSET + " (the fork cannot subset this eval; scorecheck draws it the same way)"

# The fork's single sampler wrapped every column's responses in its <output> split (PROTOCOL.md, "simple-evals part").
REASONING_DEFAULT = "reflection"

_MULTICHOICE = Extraction(patterns=(ANSWER_PATTERN_MULTICHOICE,), match="first")
_MATH = Extraction(patterns=(ANSWER_PATTERN,), match="first")


def _gpqa(variant: str, rows: int) -> EvalProtocol:
    return EvalProtocol(
        eval=f"gpqa_{variant}",
        source=f"{SOURCE} gpqa_eval.py, common.py",
        data_key=f"gpqa_{variant}",
        subset="rng = random.Random(0); rng.sample(examples, n) first, then one rng.sample(range(4), 4) permutation "
        "per example in order",
        user_template=QUERY_TEMPLATE_MULTICHOICE,
        extraction=_MULTICHOICE,
        grader="exact-letter",
        reasoning_default=REASONING_DEFAULT,
        notes=(f"{rows} questions; gold is the letter of the first shown choice equal to the correct text",)
        + (("the fork's table used gpqa_main; diamond is the same code on the simple-evals diamond file",)
           if variant == "diamond" else ()),
    )  # fmt: skip


def _math(eval_name: str, data_key: str, source: str, verified: bool, notes: tuple[str, ...]) -> EvalProtocol:
    return EvalProtocol(
        eval=eval_name,
        source=source,
        data_key=data_key,
        subset=FORK_SUBSET,
        user_template=QUERY_TEMPLATE_MATH,
        extraction=_MATH,
        grader="math-equality",
        reasoning_default=REASONING_DEFAULT,
        judge_template=EQUALITY_TEMPLATE,
        judge_unparsed="None",
        byte_verified=verified,
        notes=notes,
    )


EVALS = (
    EvalProtocol(
        eval="mmlu",
        source=f"{SOURCE} mmlu_eval.py, common.py",
        data_key="mmlu",
        subset=FORK_SUBSET,
        user_template=QUERY_TEMPLATE_MULTICHOICE,
        extraction=_MULTICHOICE,
        grader="exact-letter",
        reasoning_default=REASONING_DEFAULT,
        aggregate="micro mean (the fork's); macro over subjects reported beside it",
        notes=("read with pandas defaults: the 10 'None' choices are shown as nan",),
    ),
    _gpqa("main", 448),
    _gpqa("diamond", 198),
    _math("math", "math", f"{SOURCE} math_eval.py, common.py", True, ()),
    _math(
        "math_500",
        "math500",
        f"{SOURCE} math_eval.py (prompt, extraction, judge); data: prm800k math_splits/test.jsonl",
        False,
        ("the fork never ran MATH-500: its MATH prompt, extraction and judge on prm800k's 500-problem split",),
    ),
    EvalProtocol(
        eval="gsm8k",
        source=f"{SOURCE} gsm_eval.py, common.py",
        data_key="gsm8k",
        subset=SUBSET_NOT_IN_FORK,
        user_template=QUERY_TEMPLATE_GSM8K,
        extraction=Extraction(patterns=(ANSWER_PATTERN,), match="last", normalize_answer=(("%", ""),)),
        grader="math-equality",
        reasoning_default=REASONING_DEFAULT,
        judge_template=EQUALITY_TEMPLATE,
        judge_unparsed=None,
        notes=("gold: the text after ####, stripped, % removed; no match scores 0 without the judge",),
    ),
    EvalProtocol(
        eval="humaneval",
        source=f"{SOURCE} humaneval_eval.py; openai/human-eval check_correctness",
        data_key="humaneval",
        subset=FORK_SUBSET + " (the fork always drew all 164 this way: the same set, shuffled)",
        user_template=INSTRUCTION_HUMANEVAL + "{prompt}",
        extraction=Extraction(
            patterns=(CODE_PATTERN_HUMANEVAL,), match="first", dotall=True, no_match="whole-response"
        ),  # fmt: skip
        grader="humaneval-exec",
        exec_timeout_s=HUMANEVAL_TIMEOUT,
        reasoning_default=REASONING_DEFAULT,
        aggregate="pass@1 over tasks (pass@k with more samples)",
        notes=(f"program = prompt + completion + test + check(entry_point), {HUMANEVAL_TIMEOUT} s timeout",),
    ),
    EvalProtocol(
        eval="ifeval",
        source=f"{SOURCE} ifeval/gen_results.py, ifeval/ (the fork's checker copy)",
        data_key="ifeval_glaive",
        subset=SUBSET_NOT_IN_FORK,
        user_template="{prompt}",
        extraction=Extraction(patterns=(), no_match="whole-response"),
        grader="ifeval-glaive-2024",
        reasoning_default=REASONING_DEFAULT,
        reflection_variant="reflection-ifeval",
        reflection_prompts=("reflection", "reflection-ifeval"),
        system_prompts={"reflection": SYSTEM_REFLECTION_IFEVAL, "default": SYSTEM_DEFAULT_IFEVAL},
        aggregate="mean of prompt-strict, instruction-strict, prompt-loose, instruction-loose (the seed's choice)",
        notes=(
            "the fork's input file (key 2785 asks for one placeholder, its kwargs for 3)",
            "both checkers grade every response; the headline is the fork's",
        ),
    ),  # fmt: skip
)

PROFILE = Profile(
    name="glaive-2024",
    reference=f"{SOURCE}",
    description="the seed's table: Reflection 70B and Llama 3.1 70B, September 2024",
    system_prompts={
        "reflection": SYSTEM_REFLECTION,
        "default": SYSTEM_DEFAULT,
        "reflection-ifeval": SYSTEM_REFLECTION_IFEVAL,
        "default-ifeval": SYSTEM_DEFAULT_IFEVAL,
    },
    temperature=TEMPERATURE,
    max_tokens=MAX_TOKENS,
    extra_body=dict(EXTRA_BODY),
    http_400_text="",
    default_evals=("mmlu", "gpqa", "gsm8k"),
    judge_model=JUDGE_MODEL,
    judge_temperature=JUDGE_TEMPERATURE,
    judge_max_tokens=JUDGE_MAX_TOKENS,
    evals={e.eval: e for e in EVALS},
    aliases={"gpqa": "gpqa_main", "math500": "math_500"},
)
