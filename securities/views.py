"""Security master lookups for the run form: validate a ticker as it is typed, and the search
popover. Each answers htmx with an HTML fragment and anything else with JSON."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from securities.models import AssetType
from securities.selectors import security_search, security_validate

SEARCH_LIMIT = 20


def _asset_type(request) -> str | None:
    """The asset type asked for, or None when absent; raises ValueError when unknown."""
    asset_type = request.GET.get("asset_type", "").strip().lower()
    if not asset_type:
        return None
    if asset_type not in AssetType.values:
        raise ValueError(f"asset_type '{asset_type}' is unknown: use {' or '.join(AssetType.values)}")
    return asset_type


def _bad_request(message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=400)


@login_required
@require_GET
def security_validate_view(request):
    """?asset_type=equity&symbol=MSFT, or &field=<input name> with the value under that name
    (what an htmx input sends about itself)."""
    field = request.GET.get("field", "")
    symbol = (request.GET.get("symbol") or request.GET.get(field) or "").strip().upper()
    try:
        asset_type = _asset_type(request)
    except ValueError as exc:
        return _bad_request(str(exc))
    if asset_type is None:
        return _bad_request("asset_type is required: equity or future")
    result = security_validate(symbol=symbol, asset_type=asset_type) if symbol else None
    if request.htmx:
        context = {"validation": result, "field": field, "input_id": request.GET.get("input_id", ""), "asset_type": asset_type}
        return render(request, "securities/_symbol_validation.html", context)
    if result is None:
        return _bad_request("symbol is required")
    return JsonResponse(
        {
            "status": result.status,
            "symbol": result.symbol,
            "asset_type": result.asset_type,
            "name": result.name,
            "found_as": result.found_as,
            "message": result.message,
            "corrections": [
                {"symbol": c.symbol, "name": c.name, "asset_type": c.asset_type, "score": c.score} for c in result.corrections
            ],
        }
    )


@login_required
@require_GET
def security_search_view(request):
    """?q=micro&asset_type=equity: securities by symbol prefix or words of the name."""
    query = request.GET.get("q", "").strip()[:100]
    try:
        asset_type = _asset_type(request)
    except ValueError as exc:
        return _bad_request(str(exc))
    results = security_search(query=query, asset_type=asset_type, limit=SEARCH_LIMIT) if query else []
    if request.htmx:
        context = {"results": results, "query": query, "input_id": request.GET.get("input_id", "")}
        return render(request, "securities/_search_results.html", context)
    return JsonResponse(
        {
            "results": [
                {"symbol": s.symbol, "name": s.name, "asset_type": s.asset_type, "exchange": s.exchange} for s in results
            ]
        }
    )
