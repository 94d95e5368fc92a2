"""Imports a strategy bundle in isolation.

Each bundle gets a private module namespace: its modules run with their own `__import__`, which
resolves the bundle's helper names (`import signals`, `from signals import crossover`) to the
bundle's own modules and everything else to the normal import system. Two versions with
different `signals.py` loaded in one process each see their own, and imports inside functions
keep working after the load. Nothing stays in `sys.modules`: a module is listed there, under its
full name `lookout://<label>/<module>`, only while its top level runs (dataclasses and typing
look a class's module up there as the class is created), under one process-wide lock.

Files are compiled as `lookout://<label>/<file>` and their lines registered in `linecache`, so
tracebacks show the strategy's code and the engine can keep only the frames under
`file_prefix`. A helper is importable when its name (without .py) is a Python identifier.
"""

from __future__ import annotations

import ast
import builtins
import linecache
import sys
import threading
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from types import CodeType, ModuleType

from django.utils.text import slugify

from strategies.bundle import STRATEGY_FILE, BundleError, BundleInvalid
from strategies.sdk import StrategyBase

STRATEGY_MODULE = STRATEGY_FILE[: -len(".py")]
CODE_CACHE_SIZE = 128


class StrategyLoadError(BundleInvalid):
    """The bundle does not compile, fails while importing, or defines no usable Strategy class."""


@dataclass(frozen=True)
class LoadedStrategy:
    strategy_class: type
    file_prefix: str  # "lookout://<label>/": the filename prefix of every frame of the bundle
    module: ModuleType


def file_prefix_for(label: str) -> str:
    return f"lookout://{label}/"


def bundle_compile(*, files: dict[str, str], label: str) -> dict[str, CodeType]:
    """Compile every module of the bundle; StrategyLoadError lists every syntax error."""
    prefix = file_prefix_for(label)
    codes, errors = {}, []
    for name, source in sorted(files.items(), key=lambda item: (item[0] != STRATEGY_FILE, item[0])):
        if not name.endswith(".py"):
            continue
        try:
            codes[name] = compile(source, prefix + name, "exec", dont_inherit=True)
        except SyntaxError as exc:
            errors.append(BundleError(name, exc.lineno, f"syntax error: {exc.msg}: fix the code"))
        except ValueError as exc:  # e.g. NUL bytes in the source
            errors.append(BundleError(name, None, f"cannot be compiled ({exc}): remove the offending characters"))
    if STRATEGY_FILE not in files:
        errors.insert(0, BundleError(STRATEGY_FILE, None, "the bundle has no strategy.py: add it with `class Strategy(StrategyBase):`"))
    if errors:
        raise StrategyLoadError(errors)
    return codes


# Held while any bundle module's top level runs: its temporary sys.modules entry must not meet
# another thread's load of the same version.
_MODULE_EXEC_LOCK = threading.RLock()


class _BundleModules:
    """The private module namespace of one load of one bundle."""

    def __init__(self, *, codes: dict[str, CodeType], files: dict[str, str], prefix: str):
        self.prefix = prefix
        self.codes = {name[: -len(".py")]: code for name, code in codes.items()}
        self.sources = {f"{prefix}{name[: -len('.py')]}": files[name] for name in codes}
        self.modules: dict[str, ModuleType] = {}
        self.builtins = dict(builtins.__dict__)
        self.builtins["__import__"] = self.import_module

    def import_module(self, name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and name in self.codes:
            return self.module(name)
        return builtins.__import__(name, globals, locals, fromlist, level)

    def module(self, name: str) -> ModuleType:
        with _MODULE_EXEC_LOCK:
            if name in self.modules:  # also a partly run module, as with circular imports in Python
                return self.modules[name]
            module = ModuleType(f"{self.prefix}{name}")
            module.__file__ = f"{self.prefix}{name}.py"
            module.__loader__ = self
            module.__builtins__ = self.builtins
            self.modules[name] = module
            sys.modules[module.__name__] = module
            try:
                exec(self.codes[name], module.__dict__)
            except BaseException:
                del self.modules[name]
                raise
            finally:
                sys.modules.pop(module.__name__, None)
            return module

    def get_source(self, fullname: str) -> str | None:
        """For linecache (via `__loader__`), should its cache be cleared."""
        return self.sources.get(fullname)


def _register_lines(files: dict[str, str], prefix: str) -> None:
    for name, source in files.items():
        if name.endswith(".py"):
            # mtime None: linecache.checkcache keeps entries that have no file on disk.
            linecache.cache[prefix + name] = (len(source), None, source.splitlines(keepends=True), prefix + name)


def _failure_location(exc: BaseException, prefix: str) -> tuple[str, int | None]:
    """The innermost frame of the bundle's own code: where the author must look."""
    location = (STRATEGY_FILE, None)
    for frame, line in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename.startswith(prefix):
            location = (frame.f_code.co_filename[len(prefix):], line)
    return location


def _import_failure_message(exc: BaseException) -> str:
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return (
            f"imports '{exc.name}', which is neither a file of this bundle nor an installed package: "
            f"add {exc.name.split('.')[0]}.py to the bundle or remove the import"
        )
    return (
        f"importing the bundle raised {type(exc).__name__}: {exc}: module-level code runs at publish and at "
        "every run start; fix it or move it into on_start"
    )


def _definition_line(source: str, name: str) -> int | None:
    """The line of the last top-level statement that binds `name` in strategy.py."""
    line = None
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            line = node.lineno
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(target, ast.Name) and target.id == name for target in targets):
                line = node.lineno
        elif isinstance(node, ast.Import | ast.ImportFrom):
            if any((alias.asname or alias.name) == name for alias in node.names):
                line = node.lineno
    return line


def _strategy_class(module: ModuleType, source: str) -> type:
    candidate = module.__dict__.get("Strategy")
    line = _definition_line(source, "Strategy")
    if candidate is None:
        problem = "defines no Strategy class: add `class Strategy(StrategyBase):` with an on_start method"
    elif not isinstance(candidate, type):
        problem = f"Strategy is a {type(candidate).__name__}, not a class: define it as `class Strategy(StrategyBase):`"
    elif not issubclass(candidate, StrategyBase):
        problem = "class Strategy must subclass StrategyBase: import it with `from strategies.sdk import StrategyBase` and write `class Strategy(StrategyBase):`"
    elif getattr(candidate, "on_start", None) is StrategyBase.on_start:
        problem = "class Strategy does not define on_start: add `def on_start(self, now):` returning the Subscribe actions"
    else:
        return candidate
    raise StrategyLoadError([BundleError(STRATEGY_FILE, line, problem)])


def _import(*, codes: dict[str, CodeType], files: dict[str, str], label: str) -> LoadedStrategy:
    prefix = file_prefix_for(label)
    _register_lines(files, prefix)
    modules = _BundleModules(codes=codes, files=files, prefix=prefix)
    try:
        module = modules.module(STRATEGY_MODULE)
    except (Exception, SystemExit) as exc:
        file, line = _failure_location(exc, prefix)
        raise StrategyLoadError([BundleError(file, line, _import_failure_message(exc))]) from exc
    return LoadedStrategy(strategy_class=_strategy_class(module, files[STRATEGY_FILE]), file_prefix=prefix, module=module)


def load_strategy(*, files: dict[str, str], label: str) -> LoadedStrategy:
    """Compile and import a bundle in its own namespace and check its Strategy class.
    Raises StrategyLoadError naming the file, line and fix."""
    return _import(codes=bundle_compile(files=files, label=label), files=files, label=label)


_code_cache: OrderedDict[tuple[int, str], dict[str, CodeType]] = OrderedDict()
_code_cache_lock = threading.Lock()


def load_version(version) -> LoadedStrategy:
    """Load a published StrategyVersion as `<strategy slug>@<number>`.

    Compiled code is cached per (version id, content hash); the modules are run afresh on every
    load, so module-level state never leaks from one run into the next in a long-lived worker.
    """
    label = f"{slugify(version.strategy.name) or f'strategy-{version.strategy_id}'}@{version.number}"
    key = (version.pk, version.content_hash)
    with _code_cache_lock:
        codes = _code_cache.get(key)
        if codes is not None:
            _code_cache.move_to_end(key)
    if codes is None:
        codes = bundle_compile(files=version.files, label=label)
        with _code_cache_lock:
            _code_cache[key] = codes
            while len(_code_cache) > CODE_CACHE_SIZE:
                _code_cache.popitem(last=False)
    return _import(codes=codes, files=version.files, label=label)
