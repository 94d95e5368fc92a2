"""What every endpoint of the REST API shares: one error shape, pagination, `Idempotency-Key`
support, the docs page and the console's API token page.

Errors always look like
`{"status": 400, "code": "invalid_config", "message": "...", "field_errors": {"strategy.fast": "..."}}`
whatever raised them: DRF's own exceptions, Django's Http404/PermissionDenied, the services'
RunConfigError (400) and RunActionError (409), and anything unexpected (500, logged).
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta
from functools import cache

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.authtoken.models import Token
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder
from rest_framework.views import APIView

from issues.models import ApiIdempotencyKey
from issues.services import audit_record
from runs.config import RunConfigError
from runs.services import RunActionError
from strategies.bundle import BundleInvalid, NothingChanged

logger = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX_LENGTH = ApiIdempotencyKey._meta.get_field("key").max_length
IDEMPOTENCY_TTL = timedelta(hours=24)
# A key still unanswered this long after its first request had a request that died with its
# process (no request runs this long): the next request with it acts instead of waiting a day.
IDEMPOTENCY_ABANDONED_AFTER = timedelta(minutes=5)
STATE_CHANGING_METHODS = ("POST", "PUT", "PATCH", "DELETE")


# --- errors ---------------------------------------------------------------------------------------


class ApiError(exceptions.APIException):
    """An error with our own status and code, e.g. `ApiError(422, "idempotency_key_reused", "...")`."""

    def __init__(self, status_code: int, code: str, message: str, field_errors: dict | None = None):
        self.status_code = status_code
        self.error_code = code
        self.field_errors = field_errors or {}
        super().__init__(detail=message, code=code)


class ErrorSerializer(serializers.Serializer):
    status = serializers.IntegerField(help_text="The HTTP status, repeated.")
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. invalid_config, conflict, not_found.")
    message = serializers.CharField(help_text="What went wrong and how to fix it.")
    field_errors = serializers.DictField(
        child=serializers.CharField(), help_text='Per field ("section.field" for run configs); empty when none.'
    )


ERROR_DESCRIPTIONS = {
    400: "Invalid input; `field_errors` names each field and the fix.",
    401: "Not authenticated: log in or send `Authorization: Token <key>`.",
    403: "Authenticated, but the role does not allow this.",
    404: "No such object.",
    409: "The object's current state does not allow this action.",
    422: "The Idempotency-Key was used before with a different request.",
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """Schema entries for the error statuses an endpoint can answer with (401 always applies)."""
    return {code: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code]) for code in sorted({401, *codes})}


IDEMPOTENCY_PARAMETER = OpenApiParameter(
    name=IDEMPOTENCY_HEADER,
    location=OpenApiParameter.HEADER,
    required=False,
    type=str,
    description="Any unique string (e.g. a UUID). A retry with the same key within 24 h repeats the first "
    "answer instead of acting twice; the same key with a different request is refused with 422; while the first "
    "request is still being answered, 409 (a first request unanswered after 5 minutes died, and the retry acts).",
)


def _flatten(detail, prefix: str = "") -> dict[str, str]:
    """DRF's nested validation detail as {"a.b": "message"}."""
    if isinstance(detail, dict):
        flat = {}
        for key, value in detail.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return {prefix or "non_field_errors": " ".join(str(item) for item in detail)}
        flat = {}
        for index, item in enumerate(detail):
            flat.update(_flatten(item, f"{prefix}.{index}" if prefix else str(index)))
        return flat
    return {prefix or "non_field_errors": str(detail)}


def error_body(status_code: int, code: str, message: str, field_errors: dict | None = None) -> dict:
    return {"status": status_code, "code": code, "message": message, "field_errors": field_errors or {}}


def _error_response(status_code: int, code: str, message: str, field_errors: dict | None = None, headers=None) -> Response:
    return Response(error_body(status_code, code, message, field_errors), status=status_code, headers=headers)


def api_exception_handler(exc, context) -> Response:
    """DRF's EXCEPTION_HANDLER: every exception becomes the one error shape."""
    if isinstance(exc, RunConfigError):
        message = "The config is invalid: " + "; ".join(f"{key}: {text}" for key, text in exc.errors.items())
        return _error_response(400, "invalid_config", message, dict(exc.errors))
    if isinstance(exc, NothingChanged):
        return _error_response(409, "nothing_changed", str(exc))
    if isinstance(exc, BundleInvalid):
        field_errors = {}
        for error in exc.errors:
            where = error.file or "bundle"
            where = f"{where}:{error.line}" if error.line is not None else where
            field_errors[where] = f"{field_errors[where]}; {error.message}" if where in field_errors else error.message
        return _error_response(400, "invalid_bundle", "Publish refused:\n" + str(exc), field_errors)
    if isinstance(exc, DjangoValidationError):
        field_errors = {key: " ".join(messages) for key, messages in exc.message_dict.items()} if hasattr(exc, "error_dict") else {}
        return _error_response(400, "invalid", " ".join(exc.messages), field_errors)
    if isinstance(exc, RunActionError):
        return _error_response(409, "conflict", str(exc))
    if isinstance(exc, Http404):
        return _error_response(404, "not_found", str(exc) or "Not found.")
    if isinstance(exc, PermissionDenied):
        return _error_response(403, "permission_denied", str(exc) or "You are not allowed to do this.")
    if isinstance(exc, ApiError):
        return _error_response(exc.status_code, exc.error_code, str(exc.detail), exc.field_errors)
    if isinstance(exc, exceptions.ValidationError):
        field_errors = _flatten(exc.detail)
        message = "Invalid input: " + "; ".join(f"{key}: {text}" for key, text in field_errors.items())
        return _error_response(400, "invalid", message, field_errors)
    if isinstance(exc, exceptions.APIException):
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else exc.default_code
        return _error_response(exc.status_code, code, str(exc.detail), headers=headers)
    logger.exception("API error in %s", context.get("view").__class__.__name__ if context.get("view") else "?")
    return _error_response(500, "internal_error", "Something went wrong on the server; it has been logged.")


@csrf_exempt
def api_not_found(request, *args, **kwargs) -> JsonResponse:
    """Unknown paths under /api/ answer in the API's error shape, not with the HTML 404 page
    (exempt from CSRF: it changes nothing, and a refused POST would answer HTML)."""
    return JsonResponse(error_body(404, "not_found", f"There is no API endpoint at {request.path}."), status=404)


# --- pagination -----------------------------------------------------------------------------------


class ApiPagination(PageNumberPagination):
    """`?page=2&page_size=50`; a page past the end is a 404 in the error shape."""

    page_size = 25
    page_size_query_param = "page_size"
    max_page_size = 200


@cache
def paginated(serializer_class: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """The schema of a page of `serializer_class` items, as ApiPagination answers it."""
    name = serializer_class.__name__.removesuffix("Serializer")
    return type(
        f"Paginated{name}ListSerializer",
        (serializers.Serializer,),
        {
            "count": serializers.IntegerField(help_text="Items on all pages."),
            "next": serializers.URLField(allow_null=True, help_text="The next page, or null on the last."),
            "previous": serializers.URLField(allow_null=True, help_text="The previous page, or null on the first."),
            "results": serializer_class(many=True),
        },
    )


# --- idempotency ----------------------------------------------------------------------------------


class _Replay(Exception):
    def __init__(self, record: ApiIdempotencyKey):
        self.record = record


def _request_fingerprint(request) -> str:
    data = request.data
    if hasattr(data, "lists"):
        data = dict(data.lists())
    body = json.dumps(data, sort_keys=True, cls=JSONEncoder)
    return hashlib.sha256(f"{request.method}\n{request.path}\n{body}".encode()).hexdigest()


def idempotency_keys_expire() -> int:
    """Forget keys older than 24 hours; returns how many."""
    deleted, _ = ApiIdempotencyKey.objects.filter(created_at__lt=timezone.now() - IDEMPOTENCY_TTL).delete()
    return deleted


def idempotency_claim(*, user, key: str, fingerprint: str, method: str, path: str) -> tuple[ApiIdempotencyKey, bool]:
    """The record for (user, key), and whether this request created it (and so must act).
    Raises ApiError 422 when the key was used for a different request, 409 while the first
    request with it is still being answered; a first request unanswered for
    IDEMPOTENCY_ABANDONED_AFTER died with its process, and this one acts in its place."""
    if not key or len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
        raise ApiError(400, "invalid_idempotency_key", f"{IDEMPOTENCY_HEADER} must be 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} characters.")
    idempotency_keys_expire()
    try:
        with transaction.atomic():
            record = ApiIdempotencyKey.objects.create(user=user, key=key, request_fingerprint=fingerprint, method=method, path=path)
        return record, True
    except IntegrityError:
        record = ApiIdempotencyKey.objects.get(user=user, key=key)
    if record.request_fingerprint != fingerprint:
        raise ApiError(
            422,
            "idempotency_key_reused",
            f"{IDEMPOTENCY_HEADER} '{key}' was already used for a different request ({record.method} {record.path} "
            "with another body): use a new key for a new request.",
        )
    if record.response_status is None:
        now = timezone.now()
        abandoned = record.created_at < now - IDEMPOTENCY_ABANDONED_AFTER
        # Compare-and-set: of several retries of an abandoned request, one takes it over.
        if abandoned and ApiIdempotencyKey.objects.filter(pk=record.pk, response_status__isnull=True, created_at=record.created_at).update(created_at=now):
            record.created_at = now
            return record, True
        raise ApiError(409, "idempotency_key_in_progress", f"The first request with {IDEMPOTENCY_HEADER} '{key}' is still being answered: retry in a moment.")
    return record, False


class ApiView(APIView):
    """Base of our API views: state-changing calls honour `Idempotency-Key`. The first answer
    (success or refusal) is stored after the view ran; a server error forgets the key so the
    client's retry acts again."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self._idempotency_record = None
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is None or request.method not in STATE_CHANGING_METHODS or not hasattr(self, request.method.lower()):
            return
        record, created = idempotency_claim(
            user=request.user, key=key, fingerprint=_request_fingerprint(request), method=request.method, path=request.path[:500]
        )
        if not created:
            raise _Replay(record)
        self._idempotency_record = record

    def handle_exception(self, exc):
        if isinstance(exc, _Replay):
            response = Response(exc.record.response_body, status=exc.record.response_status)
            response["Idempotent-Replayed"] = "true"
            return response
        return super().handle_exception(exc)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        record = getattr(self, "_idempotency_record", None)
        if record is not None:
            if response.status_code >= 500:
                record.delete()
            else:
                body = getattr(response, "data", None)
                record.response_status = response.status_code
                record.response_body = json.loads(json.dumps(body, cls=JSONEncoder)) if body is not None else None
                record.save(update_fields=["response_status", "response_body"])
        return response


# --- docs page and API tokens ---------------------------------------------------------------------


@require_GET
def api_docs_page(request):
    """Swagger UI over /api/schema/, from vendored files (no CDN)."""
    return render(request, "api/docs.html")


def api_token_create(*, user) -> Token:
    """A new API token for `user`, replacing (revoking) any previous one."""
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        token = Token.objects.create(user=user)
        audit_record(actor=user, action="api_token.create", object_type="user", object_id=user.pk, allowed=True)
    return token


def api_token_revoke(*, user) -> bool:
    """Revoke `user`'s API token; False when there was none."""
    with transaction.atomic():
        deleted, _ = Token.objects.filter(user=user).delete()
        if deleted:
            audit_record(actor=user, action="api_token.revoke", object_type="user", object_id=user.pk, allowed=True)
    return bool(deleted)


@login_required
@require_http_methods(["GET", "POST"])
def api_tokens_page(request):
    """The user's API token: create (the key is shown once, on this response only) or revoke."""
    new_key = None
    notice = ""
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "create":
            new_key = api_token_create(user=request.user).key
        elif action == "revoke":
            notice = "Token revoked: scripts using it are refused from now on." if api_token_revoke(user=request.user) else "There was no token to revoke."
        else:
            return render(request, "api/tokens.html", {"error": "Unknown action: use Create or Revoke."}, status=400)
    token = Token.objects.filter(user=request.user).first()
    context = {"token": token, "new_key": new_key, "notice": notice, "key_hint": token.key[:6] if token else ""}
    return render(request, "api/tokens.html", context)
