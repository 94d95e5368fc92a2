"""The Django-free engine core: clock, feeds, simulated broker and dispatch loop.

    from runs.engine import run_backtest, CoreSettings, CoreSettingsError, EngineResult
"""

from runs.engine.backtest import EngineResult, run_backtest
from runs.engine.core_settings import Benchmark, Commission, CoreSettings, CoreSettingsError

__all__ = ["Benchmark", "Commission", "CoreSettings", "CoreSettingsError", "EngineResult", "run_backtest"]
