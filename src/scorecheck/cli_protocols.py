"""The ``scorecheck protocols`` command (registered on the main app by ``register``): list the profiles and the
evals each defines; ``protocols diff A B [--eval E]`` shows field by field what differs."""

from __future__ import annotations

from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    protocols_app = typer.Typer(help="Protocol profiles: list them, and diff two (why two numbers are not comparable).")
    app.add_typer(protocols_app, name="protocols")

    @protocols_app.callback(invoke_without_command=True)
    def protocols_list(ctx: typer.Context) -> None:
        """List the profiles and the evals each defines."""
        if ctx.invoked_subcommand is not None:
            return
        from scorecheck.protocols import PROFILES
        from scorecheck.protocols.diff import listing

        for line in listing(PROFILES):
            print(line)

    @protocols_app.command("diff")
    def protocols_diff(
        a: Annotated[str, typer.Argument(help="A profile, e.g. glaive-2024.")],
        b: Annotated[str, typer.Argument(help="Another profile, e.g. simple-evals.")],
        eval_name: Annotated[
            Optional[str],
            typer.Option("--eval", metavar="EVAL", show_default="every eval", help="One eval, e.g. mmlu."),
        ] = None,
    ) -> None:
        """What differs between two profiles, field by field: prompts as a unified diff, regexes, match rules,
        grader, sampling, data and subset, repeats."""
        from scorecheck.cli import _fail
        from scorecheck.errors import ScorecheckError, UsageError
        from scorecheck.protocols import get_profile
        from scorecheck.protocols.diff import diff

        try:
            pa, pb = get_profile(a), get_profile(b)
            name = None
            if eval_name is not None:
                name = pa.canonical_eval(eval_name)
                if name not in pa.evals and pb.canonical_eval(eval_name) in pb.evals:
                    name = pb.canonical_eval(eval_name)
                if name not in pa.evals and name not in pb.evals:
                    raise UsageError(f"--eval {eval_name}: neither {a} nor {b} defines it")
        except ScorecheckError as e:
            _fail(e)
            return
        for line in diff(pa, pb, name):
            print(line)
