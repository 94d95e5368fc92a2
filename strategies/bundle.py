"""What a strategy bundle is allowed to contain (product.md §2), and the errors that say why not.

Django-free: the schema checks, the loader and the publish service all report problems as
`BundleError(file, line, message)`, where the message ends with the fix.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

STRATEGY_FILE = "strategy.py"
SCHEMA_FILE = "config_schema.json"
MAX_FILES = 50
MAX_FILE_BYTES = 1024 * 1024
HELPER_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*\.py")
# A helper with this module name would hide the SDK from every `from strategies.sdk import ...`.
RESERVED_MODULE_NAMES = {"strategies"}


@dataclass(frozen=True)
class BundleError:
    file: str | None  # None: about the bundle as a whole
    line: int | None
    message: str

    def __str__(self) -> str:
        if self.file is None:
            return self.message
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.message}"


class BundleInvalid(Exception):
    """The files break the bundle rules; `errors` lists every problem found."""

    def __init__(self, errors: list[BundleError]):
        self.errors = list(errors)
        super().__init__("\n".join(str(error) for error in self.errors))


class PublishError(BundleInvalid):
    """Publish refused: the bundle is invalid, or there is nothing new to publish."""


class NothingChanged(PublishError):
    """The working copy is identical to the latest version, which is kept on the exception."""

    def __init__(self, version):
        self.version = version
        super().__init__([BundleError(None, None, f"nothing changed since v{version.number}: edit a file before publishing again")])


def bundle_files_check(files) -> list[BundleError]:
    """Names, kinds and sizes of the files. Presence of the required files is checked at publish:
    a working copy may be saved half-way through a rename."""
    if not isinstance(files, dict):
        return [BundleError(None, None, "files must be a mapping of file name to source text")]
    errors = []
    if len(files) > MAX_FILES:
        errors.append(BundleError(None, None, f"the bundle has {len(files)} files; at most {MAX_FILES} are allowed: merge or remove helpers"))
    for name, source in files.items():
        if not isinstance(name, str) or not isinstance(source, str):
            errors.append(BundleError(str(name), None, "file names and contents must be text"))
            continue
        if name != SCHEMA_FILE:
            if not name.endswith(".py"):
                errors.append(BundleError(name, None, f"only Python files (*.py) and {SCHEMA_FILE} may be in a bundle: remove this file"))
                continue
            if not HELPER_NAME.fullmatch(name):
                errors.append(
                    BundleError(name, None, "invalid file name: use letters, digits, '_', '-' and '.', not starting with '.', ending in .py")
                )
                continue
            if name[: -len(".py")] in RESERVED_MODULE_NAMES:
                errors.append(BundleError(name, None, f"this name hides the SDK package '{name[:-3]}': rename the file"))
        size = len(source.encode("utf-8"))
        if size > MAX_FILE_BYTES:
            errors.append(BundleError(name, None, f"file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,} (1 MB): split it or trim it"))
    return errors


def bundle_content_hash(files: dict[str, str]) -> str:
    """sha256 over the files sorted by name; the same files always give the same hash."""
    canonical = json.dumps(sorted(files.items()), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def bundle_read_folder(folder: Path) -> dict[str, str]:
    """strategy.py, config_schema.json and *.py helpers at the top of `folder`; sub-folders
    (__pycache__, tests), hidden files and other files are not part of a bundle."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleInvalid([BundleError(None, None, f"folder {folder} does not exist: give the path of a strategy folder")])
    files, errors = {}, []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or not (path.suffix == ".py" or path.name == SCHEMA_FILE):
            continue
        try:
            files[path.name] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            errors.append(BundleError(path.name, None, "is not UTF-8 text: save it as UTF-8"))
    if errors:
        raise BundleInvalid(errors)
    return files


def module_docstring(source: str) -> str:
    """The module docstring of a Python source, or "" when it has none or does not parse."""
    try:
        return ast.get_docstring(ast.parse(source)) or ""
    except (SyntaxError, ValueError):
        return ""
