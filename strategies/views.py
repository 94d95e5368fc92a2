"""The Strategies pages: the list, the editor (files, the parameters panel, save and publish),
and the published versions with their files, diffs and runs.

Pages are server-rendered; the editor is a small JS app (static/lookout/strategies.js) that talks
JSON to the write endpoints here. Every write checks the Strategy author role here (403 with a
message, audited) and again in its service, which also audits what it does.
"""

from __future__ import annotations

import difflib
import enum
import inspect
import json
import types
from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

import strategies.sdk as sdk
from issues.services import audit_record
from runs.forms import RunForm
from runs.models import Mode
from strategies.bundle import SCHEMA_FILE, STRATEGY_FILE, BundleError, BundleInvalid, NothingChanged
from strategies.models import Strategy, StrategyVersion
from strategies.schema import ASSET_TYPES, FREQUENCIES, schema_check
from strategies.selectors import (
    strategy_list_with_activity,
    strategy_version_get,
    strategy_version_runs,
    strategy_versions_with_run_counts,
)
from strategies.services import AUTHOR_PERMISSION, strategy_create, strategy_publish, strategy_update_files

AUTHOR_REFUSAL = "You need the Strategy author role to edit and publish strategies."
REQUIRED_FILES = (STRATEGY_FILE, SCHEMA_FILE)
PARAMETER_KINDS = [
    ("text", "Text"),
    ("integer", "Integer"),
    ("decimal", "Decimal"),
    ("boolean", "Boolean"),
    ("choice", "Choice"),
    ("symbol", "Symbol"),
    ("bar_frequency", "Bar Frequency"),
]


# --- helpers -----------------------------------------------------------------------------------


def _is_author(user) -> bool:
    return user.is_active and user.has_perm(AUTHOR_PERMISSION)


def _refuse_non_author(request, *, action: str, strategy: Strategy | None = None) -> JsonResponse | None:
    """A 403 (audited) for a user without the Strategy author role; None when allowed."""
    if _is_author(request.user):
        return None
    audit_record(actor=request.user, action=action, object_type="strategy", object_id=strategy.pk if strategy else "", allowed=False)
    return JsonResponse({"errors": [_error_json(BundleError(None, None, AUTHOR_REFUSAL))]}, status=403)


def _error_json(error: BundleError) -> dict:
    return {"file": error.file, "line": error.line, "message": error.message, "text": str(error)}


def _errors_response(errors: list[BundleError], *, status: int = 400) -> JsonResponse:
    return JsonResponse({"errors": [_error_json(error) for error in errors]}, status=status)


def _get_strategy(strategy_id: int) -> Strategy:
    strategy = Strategy.objects.select_related("owner").filter(pk=strategy_id).first()
    if strategy is None:
        raise Http404(f"There is no strategy {strategy_id}.")
    return strategy


def _json_body(request) -> dict:
    try:
        body = json.loads(request.body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


# --- the SDK's "Available imports" ---------------------------------------------------------------


@dataclass(frozen=True)
class SdkImport:
    name: str
    kind: str  # class | enum | event | action | union | module | protocol
    signature: str
    summary: str
    members: tuple[str, ...] = ()


def _own_doc(obj) -> str:
    """The object's own docstring, not one inherited from str/Enum, nor a dataclass's generated one."""
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    doc = inspect.cleandoc(doc) if isinstance(doc, str) else ""
    name = getattr(obj, "__name__", "")
    if name and doc.startswith(f"{name}("):
        return ""
    return doc.split("\n\n")[0].replace("\n", " ")


def sdk_imports() -> list[SdkImport]:
    """What `from strategies.sdk import ...` offers, read from the SDK itself."""
    found = []
    for name in sdk.__all__:
        obj = getattr(sdk, name)
        if isinstance(obj, types.ModuleType):
            public = getattr(obj, "__all__", None) or [key for key, value in vars(obj).items() if isinstance(value, type) and not key.startswith("_") and value.__module__ == obj.__name__]
            found.append(SdkImport(name, "module", "", _own_doc(obj), tuple(public)))
        elif isinstance(obj, types.UnionType):
            found.append(SdkImport(name, "union", "", "Any of: " + ", ".join(member.__name__ for member in obj.__args__), ()))
        elif isinstance(obj, type) and issubclass(obj, enum.Enum):
            found.append(SdkImport(name, "enum", "", _own_doc(obj), tuple(member.name for member in obj)))
        else:
            try:
                signature = str(inspect.signature(obj)).replace("strategies.sdk.enums.", "")
            except (TypeError, ValueError):
                signature = ""
            kind = "protocol" if getattr(obj, "_is_protocol", False) else "class"
            found.append(SdkImport(name, kind, "" if kind == "protocol" else signature, _own_doc(obj)))
    return found


# --- the list ------------------------------------------------------------------------------------


def _list_page(request, *, form_errors: dict | None = None, form_values: dict | None = None, status: int = 200):
    context = {
        "strategies": strategy_list_with_activity(),
        "can_author": _is_author(request.user),
        "form_errors": form_errors or {},
        "form_values": form_values or {},
    }
    return render(request, "strategies/list.html", context, status=status)


@login_required
@require_GET
def strategies_page(request):
    return _list_page(request)


@login_required
@require_POST
def strategy_new(request):
    name, description = request.POST.get("name", ""), request.POST.get("description", "")
    if not _is_author(request.user):
        audit_record(actor=request.user, action="strategy.create", object_type="strategy", allowed=False)
        return render(request, "403.html", {"message": AUTHOR_REFUSAL}, status=403)
    try:
        strategy = strategy_create(name=name, description=description, owner=request.user)
    except ValidationError as exc:
        errors = {key: " ".join(value) for key, value in exc.message_dict.items()}
        return _list_page(request, form_errors=errors, form_values={"name": name, "description": description}, status=422)
    messages.success(request, f"Strategy “{strategy.name}” created from the buy-and-hold starter: edit it, then publish.")
    return redirect("strategies:edit", strategy.pk)


# --- the editor ----------------------------------------------------------------------------------


@login_required
@require_GET
def strategy_edit(request, strategy_id: int):
    strategy = _get_strategy(strategy_id)
    latest = strategy.versions.select_related("published_by").order_by("-number").first()
    editor = {
        "strategyId": strategy.pk,
        "files": strategy.files,
        "canEdit": _is_author(request.user),
        "required": list(REQUIRED_FILES),
        "schemaFile": SCHEMA_FILE,
        "assetTypes": list(ASSET_TYPES),
        "frequencies": list(FREQUENCIES),
        "kinds": PARAMETER_KINDS,
        "urls": {
            "save": reverse("strategies:save", args=[strategy.pk]),
            "files": reverse("strategies:files", args=[strategy.pk]),
            "publish": reverse("strategies:publish", args=[strategy.pk]),
            "preview": reverse("strategies:preview", args=[strategy.pk]),
            "check": reverse("strategies:schema-check", args=[strategy.pk]),
        },
    }
    context = {"strategy": strategy, "latest": latest, "editor": editor, "can_author": editor["canEdit"], "sdk_imports": sdk_imports()}
    return render(request, "strategies/editor.html", context)


@login_required
@require_POST
def strategy_save(request, strategy_id: int):
    strategy = _get_strategy(strategy_id)
    refusal = _refuse_non_author(request, action="strategy.save", strategy=strategy)
    if refusal:
        return refusal
    files = _json_body(request).get("files")
    try:
        strategy_update_files(strategy=strategy, files=files, user=request.user)
    except BundleInvalid as exc:
        return _errors_response(exc.errors)
    except PermissionDenied as exc:
        return _errors_response([BundleError(None, None, str(exc))], status=403)
    return JsonResponse({"saved": sorted(strategy.files), "message": "Saved. Publish to make a new version."})


@login_required
@require_POST
def strategy_files_action(request, strategy_id: int):
    """Add, rename or delete a helper module in the saved working copy; the service enforces the
    bundle's name rules, the two required files can be neither renamed nor deleted."""
    strategy = _get_strategy(strategy_id)
    refusal = _refuse_non_author(request, action="strategy.save", strategy=strategy)
    if refusal:
        return refusal
    body = _json_body(request)
    action, name, new_name = body.get("action"), str(body.get("name") or "").strip(), str(body.get("new_name") or "").strip()
    files = dict(strategy.files)
    if action == "add":
        if not name:
            return _errors_response([BundleError(None, None, "a new file needs a name such as helpers.py: enter one")])
        if name in files:
            return _errors_response([BundleError(name, None, "a file with this name already exists: choose another name")])
        files[name] = f'"""{name[:-3] if name.endswith(".py") else name}: helpers for strategy.py."""\n'
    elif action in ("rename", "delete"):
        if name not in files:
            return _errors_response([BundleError(name or None, None, "there is no such file in the working copy: save it first")])
        if name in REQUIRED_FILES:
            return _errors_response([BundleError(name, None, f"{name} is required in every strategy: it cannot be {action}d")])
        if action == "rename":
            if not new_name:
                return _errors_response([BundleError(name, None, "enter the new name, e.g. signals.py")])
            if new_name in files:
                return _errors_response([BundleError(new_name, None, "a file with this name already exists: choose another name")])
            files = {new_name if key == name else key: value for key, value in files.items()}
        else:
            del files[name]
    else:
        return _errors_response([BundleError(None, None, 'action must be "add", "rename" or "delete"')])
    try:
        strategy_update_files(strategy=strategy, files=files, user=request.user)
    except BundleInvalid as exc:
        return _errors_response(exc.errors)
    return JsonResponse({"files": sorted(strategy.files), "content": strategy.files.get(new_name or name, "")})


@login_required
@require_POST
def strategy_publish_action(request, strategy_id: int):
    """Save the files sent (when they differ from the saved copy), then publish."""
    strategy = _get_strategy(strategy_id)
    refusal = _refuse_non_author(request, action="strategy.publish", strategy=strategy)
    if refusal:
        return refusal
    body = _json_body(request)
    files = body.get("files")
    try:
        if files is not None and files != strategy.files:
            strategy_update_files(strategy=strategy, files=files, user=request.user)
        version = strategy_publish(strategy=strategy, user=request.user, message=str(body.get("message") or ""))
    except NothingChanged as exc:
        return _errors_response(exc.errors, status=409)
    except BundleInvalid as exc:  # PublishError too: every problem, each with its file and line
        return _errors_response(exc.errors)
    return JsonResponse(
        {
            "version": {"id": version.pk, "number": version.number},
            "message": f"Published v{version.number}",
            "create_run_url": f"{reverse('runs:new')}?version={version.pk}",
            "versions_url": reverse("strategies:versions", args=[strategy.pk]),
            "version_url": reverse("strategies:version", args=[strategy.pk, version.number]),
        }
    )


def _schema_from_body(request) -> tuple[dict | None, list[BundleError]]:
    text = request.body.decode("utf-8", errors="replace") if request.body else ""
    return schema_check(text)


@login_required
@require_POST
def strategy_schema_check(request, strategy_id: int):
    """Check a config_schema.json text (pasted or imported into the raw JSON view)."""
    _get_strategy(strategy_id)
    schema, errors = _schema_from_body(request)
    if errors:
        return _errors_response(errors, status=422)
    return JsonResponse({"ok": True, "parameters": schema["x-lookout-order"]})


@login_required
@require_POST
def strategy_preview(request, strategy_id: int):
    """The run form's parameter fields for a schema text, as New Run will draw them."""
    strategy = _get_strategy(strategy_id)
    schema, errors = _schema_from_body(request)
    if errors:
        return render(request, "strategies/_preview.html", {"errors": errors}, status=422)
    # A stand-in for the version: the run form reads only the schema and the strategy's id.
    version = types.SimpleNamespace(config_schema=schema, strategy_id=strategy.pk)
    form = RunForm(version=version, mode=Mode.BACKTEST, id_prefix="preview")
    for form_field in form.parameter_fields:
        form_field.parameter = ""  # the editor's own rows carry the #param-<name> anchors
    return render(request, "strategies/_preview.html", {"form": form, "version": version})


# --- versions ------------------------------------------------------------------------------------


@login_required
@require_GET
def strategy_versions(request, strategy_id: int):
    strategy = _get_strategy(strategy_id)
    versions = strategy_versions_with_run_counts(strategy=strategy)
    context = {"strategy": strategy, "versions": versions, "can_author": _is_author(request.user)}
    return render(request, "strategies/versions.html", context)


def _get_version(strategy: Strategy, number: int) -> StrategyVersion:
    try:
        return strategy_version_get(strategy=strategy, number=number)
    except StrategyVersion.DoesNotExist:
        raise Http404(f"{strategy.name} has no version {number}.") from None


@login_required
@require_GET
def strategy_version_page(request, strategy_id: int, number: int):
    strategy = _get_strategy(strategy_id)
    version = _get_version(strategy, number)
    runs = strategy_version_runs(version=version)
    files = sorted(version.files.items(), key=lambda item: (item[0] != STRATEGY_FILE, item[0] != SCHEMA_FILE, item[0]))
    context = {"strategy": strategy, "version": version, "files": files, "runs": runs, "can_operate": request.user.has_perm("runs.operate_run")}
    return render(request, "strategies/version.html", context)


@dataclass(frozen=True)
class FileDiff:
    name: str
    status: str  # added | removed | changed | unchanged
    unified: str
    table: str


def versions_diff(older: StrategyVersion, newer: StrategyVersion, *, side_by_side: bool) -> list[FileDiff]:
    """Per file, what changed from `older` to `newer`: unified text and, when asked, difflib's
    side-by-side HTML table."""
    diffs = []
    html = difflib.HtmlDiff(tabsize=4, wrapcolumn=80)
    for name in sorted(set(older.files) | set(newer.files), key=lambda item: (item != STRATEGY_FILE, item != SCHEMA_FILE, item)):
        before, after = older.files.get(name), newer.files.get(name)
        status = "added" if before is None else "removed" if after is None else "unchanged" if before == after else "changed"
        before_lines, after_lines = (before or "").splitlines(), (after or "").splitlines()
        unified = "\n".join(
            difflib.unified_diff(before_lines, after_lines, f"v{older.number}/{name}", f"v{newer.number}/{name}", lineterm="")
        )
        table = ""
        if side_by_side and status != "unchanged":
            table = html.make_table(before_lines, after_lines, f"v{older.number}", f"v{newer.number}", context=True, numlines=3)
        diffs.append(FileDiff(name, status, unified, table))
    return diffs


@login_required
@require_GET
def strategy_versions_diff(request, strategy_id: int):
    strategy = _get_strategy(strategy_id)
    numbers = list(strategy.versions.order_by("-number").values_list("number", flat=True))
    if len(numbers) < 2:
        messages.info(request, "A diff needs two published versions.")
        return redirect("strategies:versions", strategy.pk)
    try:
        newer_number = int(request.GET.get("to") or numbers[0])
        older_number = int(request.GET.get("from") or numbers[1])
    except ValueError:
        raise Http404("from and to must be version numbers") from None
    older, newer = _get_version(strategy, older_number), _get_version(strategy, newer_number)
    view = "unified" if request.GET.get("view") == "unified" else "split"
    context = {
        "strategy": strategy,
        "older": older,
        "newer": newer,
        "numbers": numbers,
        "view": view,
        "diffs": versions_diff(older, newer, side_by_side=view == "split"),
    }
    return render(request, "strategies/diff.html", context)

