"""The strategies part of the REST API (/api/v1/strategies/...): strategies and their published
versions to read (any login), and Publish for Strategy authors, over strategies/services.py."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from config.api import IDEMPOTENCY_PARAMETER, ApiPagination, ApiView, error_responses, paginated
from strategies.models import Strategy, StrategyVersion
from strategies.selectors import strategy_list, strategy_version_get
from strategies.services import MESSAGE_MAX_LENGTH, strategy_publish

STRATEGY_ID = OpenApiParameter("strategy_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The strategy's id.")
VERSION_NUMBER = OpenApiParameter("number", OpenApiTypes.INT, OpenApiParameter.PATH, description="The version number (1, 2 ...).")


class StrategySerializer(serializers.ModelSerializer):
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    latest_version_number = serializers.IntegerField(allow_null=True, help_text="null before the first publish.")

    class Meta:
        model = Strategy
        fields = ["id", "name", "description", "owner", "latest_version_number", "created_at", "updated_at"]
        read_only_fields = fields


class StrategyVersionSerializer(serializers.ModelSerializer):
    published_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = StrategyVersion
        fields = ["id", "strategy", "number", "message", "content_hash", "published_by", "published_at"]
        read_only_fields = fields


class StrategyVersionDetailSerializer(StrategyVersionSerializer):
    config_schema = serializers.JSONField(help_text="JSON Schema of the run config's strategy section.")
    files = serializers.DictField(child=serializers.CharField(allow_blank=True), help_text="file name -> source text, as published.")

    class Meta(StrategyVersionSerializer.Meta):
        fields = [*StrategyVersionSerializer.Meta.fields, "config_schema", "files"]
        read_only_fields = fields


class PublishSerializer(serializers.Serializer):
    message = serializers.CharField(required=False, allow_blank=True, max_length=MESSAGE_MAX_LENGTH, help_text="What changed.")


def _get_strategy(strategy_id: int) -> Strategy:
    strategy = strategy_list().filter(pk=strategy_id).first()
    if strategy is None:
        raise Http404(f"There is no strategy {strategy_id}.")
    return strategy


class StrategyListView(ApiView):
    @extend_schema(operation_id="strategies_list", summary="Strategies by name",
                   parameters=[OpenApiParameter("page", int), OpenApiParameter("page_size", int)],
                   responses={200: paginated(StrategySerializer), **error_responses(404)})
    def get(self, request):
        paginator = ApiPagination()
        page = paginator.paginate_queryset(strategy_list(), request, view=self)
        return paginator.get_paginated_response(StrategySerializer(page, many=True).data)


class StrategyDetailView(ApiView):
    @extend_schema(operation_id="strategies_retrieve", summary="A strategy", parameters=[STRATEGY_ID],
                   responses={200: StrategySerializer, **error_responses(404)})
    def get(self, request, strategy_id: int):
        return Response(StrategySerializer(_get_strategy(strategy_id)).data)


class StrategyVersionListView(ApiView):
    @extend_schema(operation_id="strategies_versions_list", summary="A strategy's published versions, newest first",
                   parameters=[STRATEGY_ID], responses={200: StrategyVersionSerializer(many=True), **error_responses(404)})
    def get(self, request, strategy_id: int):
        strategy = _get_strategy(strategy_id)
        versions = strategy.versions.select_related("published_by").order_by("-number")
        return Response(StrategyVersionSerializer(versions, many=True).data)


class StrategyVersionDetailView(ApiView):
    @extend_schema(operation_id="strategies_versions_retrieve", summary="A published version: its files and config schema",
                   parameters=[STRATEGY_ID, VERSION_NUMBER], responses={200: StrategyVersionDetailSerializer, **error_responses(404)})
    def get(self, request, strategy_id: int, number: int):
        strategy = _get_strategy(strategy_id)
        try:
            version = strategy_version_get(strategy=strategy, number=number)
        except StrategyVersion.DoesNotExist:
            raise Http404(f"Strategy {strategy_id} has no version {number}.") from None
        return Response(StrategyVersionDetailSerializer(version).data)


class StrategyPublishView(ApiView):
    @extend_schema(
        operation_id="strategies_publish",
        summary="Publish the saved working copy as the next version (Strategy author)",
        description="400 `invalid_bundle` lists every problem (field_errors keyed `file:line`); "
        "409 `nothing_changed` when the files equal the latest version's.",
        parameters=[STRATEGY_ID, IDEMPOTENCY_PARAMETER],
        request=PublishSerializer,
        responses={201: StrategyVersionDetailSerializer, **error_responses(400, 403, 404, 409, 422)},
    )
    def post(self, request, strategy_id: int):
        strategy = _get_strategy(strategy_id)
        payload = PublishSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        version = strategy_publish(strategy=strategy, user=request.user, message=payload.validated_data.get("message", ""))
        return Response(StrategyVersionDetailSerializer(version).data, status=201)
