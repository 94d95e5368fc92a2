"""The Django edge of the engine: one runner per execution mode.

A runner takes a claimed run (status `running`) and returns how it ended; the task and the
services never look inside. Swapping the engine means changing a runner, nothing else.
"""

from dataclasses import dataclass

from runs.models import Mode


@dataclass(frozen=True)
class RunOutcome:
    status: str  # "complete" | "stopped" | "error"
    message: str = ""


def runner_for(mode: str):
    if mode == Mode.BACKTEST:
        from runs.runners.backtest import backtest_run_execute

        return backtest_run_execute
    if mode == Mode.PAPER:
        from runs.runners.paper import paper_run_execute

        return paper_run_execute
    if mode == Mode.LIVE:
        from runs.runners.live import live_run_execute

        return live_run_execute
    raise LookupError(f"no runner for {mode} runs on this deployment")
