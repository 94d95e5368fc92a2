"""The securities part of the REST API: validate a symbol for an asset type, and search the
security master, over the same selectors as the run form's lookups."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from config.api import ApiView, error_responses
from securities.models import AssetType, Security
from securities.selectors import OTHER_ASSET_TYPE, RECOGNISED, UNKNOWN, security_search, security_validate

SEARCH_LIMIT_MAX = 100


class CorrectionSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    name = serializers.CharField()
    asset_type = serializers.ChoiceField(choices=AssetType.choices)
    score = serializers.FloatField(help_text="0..1, higher is closer.")


class ValidationResultSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=[RECOGNISED, OTHER_ASSET_TYPE, UNKNOWN])
    symbol = serializers.CharField(help_text="Normalised: stripped, upper case.")
    asset_type = serializers.ChoiceField(choices=AssetType.choices)
    name = serializers.CharField(allow_blank=True)
    found_as = serializers.ListField(child=serializers.ChoiceField(choices=AssetType.choices), help_text="Asset types the symbol exists under.")
    message = serializers.CharField(help_text="For the operator, next to the field.")
    corrections = CorrectionSerializer(many=True, help_text="Closest symbols when unknown.")


class SecuritySerializer(serializers.ModelSerializer):
    class Meta:
        model = Security
        fields = ["id", "symbol", "name", "asset_type", "exchange", "active"]
        read_only_fields = fields


class ValidateQuerySerializer(serializers.Serializer):
    symbol = serializers.CharField(max_length=32, help_text="e.g. MSFT")
    asset_type = serializers.ChoiceField(choices=AssetType.values, help_text="The asset type the field expects.")

    def validate_asset_type(self, value):
        return value.lower()


class SearchQuerySerializer(serializers.Serializer):
    q = serializers.CharField(max_length=100, help_text="A symbol prefix or words of the name.")
    asset_type = serializers.ChoiceField(choices=AssetType.values, required=False)
    limit = serializers.IntegerField(min_value=1, max_value=SEARCH_LIMIT_MAX, default=20)


class SecurityValidateView(ApiView):
    @extend_schema(operation_id="securities_validate", summary="Check a symbol for an asset type, with corrections",
                   parameters=[ValidateQuerySerializer], responses={200: ValidationResultSerializer, **error_responses(400)})
    def get(self, request):
        query = ValidateQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        result = security_validate(**query.validated_data)
        return Response(ValidationResultSerializer(result).data)


class SecuritySearchView(ApiView):
    @extend_schema(operation_id="securities_search", summary="Securities by symbol prefix or words of the name",
                   parameters=[SearchQuerySerializer], responses={200: SecuritySerializer(many=True), **error_responses(400)})
    def get(self, request):
        query = SearchQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        results = security_search(query=data["q"], asset_type=data.get("asset_type"), limit=data["limit"])
        return Response(SecuritySerializer(results, many=True).data)
