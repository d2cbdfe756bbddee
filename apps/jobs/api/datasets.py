"""The datasets API: list and read them, upload one, change its split, scan the roots, validate one,
preview its first rows. Viewers read; operators write."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import parsers, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.commands import ServiceWriteMixin
from apps.core.api.parsers import JSONParser
from apps.core.api.serializers import UserBriefSerializer
from apps.jobs.datasets import preview, selectors, services, upload
from apps.jobs.datasets.filters import DatasetFilter
from apps.jobs.domain.datasets import EVAL_SHARE_DEFAULT, NAME_MAX, SHAPE_CHOICES, Split
from apps.jobs.domain.states import DatasetState
from apps.jobs.models import Dataset

SPLIT_SEED_MAX = 2**31 - 1


def shape_field() -> serializers.ChoiceField:
    """A dataset's shape: "" until validation finds the shape of its first good row."""
    return serializers.ChoiceField(
        choices=SHAPE_CHOICES,
        allow_blank=True,
        read_only=True,
        help_text="What each row holds: text, prompt/completion or chat messages; empty until "
        "validation has read a good row",
    )


class DatasetSerializer(serializers.ModelSerializer):
    created_by = UserBriefSerializer(read_only=True, allow_null=True)
    shape = shape_field()
    errors = serializers.JSONField(
        read_only=True,
        help_text='The first bad rows: [{"row": 1-based number (0: the file itself), "error"}]',
    )

    class Meta:
        model = Dataset
        fields = [
            "id",
            "name",
            "description",
            "state",
            "format",
            "shape",
            "source",
            "root",
            "path",
            "size_bytes",
            "sha256",
            "rows",
            "errors",
            "error_count",
            "validated_at",
            "eval_share",
            "split_seed",
            "archived",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class DatasetBriefSerializer(serializers.ModelSerializer):
    shape = shape_field()

    class Meta:
        model = Dataset
        fields = ["id", "name", "state", "shape", "rows"]
        read_only_fields = fields


class DatasetUploadInput(serializers.Serializer):
    file = serializers.FileField(help_text="A .jsonl or .txt file (multipart/form-data)")
    name = serializers.CharField(
        max_length=NAME_MAX,
        required=False,
        default="",
        allow_blank=True,
        help_text="Default: the file's name",
    )
    description = serializers.CharField(required=False, default="", allow_blank=True)
    eval_share = serializers.FloatField(min_value=0.0, max_value=0.9, default=EVAL_SHARE_DEFAULT)
    split_seed = serializers.IntegerField(min_value=0, max_value=SPLIT_SEED_MAX, default=0)


class DatasetUpdateInput(serializers.Serializer):
    description = serializers.CharField(allow_blank=True)
    eval_share = serializers.FloatField(min_value=0.0, max_value=0.9)
    split_seed = serializers.IntegerField(min_value=0, max_value=SPLIT_SEED_MAX)


class PreviewQuery(serializers.Serializer):
    rows = serializers.IntegerField(min_value=1, max_value=preview.ROWS_MAX, default=preview.ROWS_DEFAULT)
    split = serializers.ChoiceField(choices=[s.value for s in Split], default=Split.ALL.value)


class MessageSerializer(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField()


class PreviewRowSerializer(serializers.Serializer):
    row = serializers.IntegerField(help_text="1-based row (line) number in the file")
    split = serializers.CharField(help_text="train or eval: where the seeded split puts the row")
    prompt = serializers.CharField(help_text="Not learned; empty for text rows")
    completion = serializers.CharField(help_text="What is learned (a text row's whole text)")
    messages = MessageSerializer(many=True, help_text="A chat row's messages")
    error = serializers.CharField(help_text="Why the row is bad; empty for a good row")
    note = serializers.CharField(
        help_text="Why the row's texts are not shown (too long to preview); empty when they are"
    )


class PreviewSerializer(serializers.Serializer):
    split = serializers.CharField()
    rows = PreviewRowSerializer(many=True)
    note = serializers.CharField(
        help_text="Why fewer rows than asked came back when the file has more: a preview reads a bounded "
        "part of the file (e.g. 'None in the first 2,000 rows of the file: ...'), or why the file "
        "cannot be read; empty otherwise"
    )


class RefusalSerializer(serializers.Serializer):
    path = serializers.CharField()
    reason = serializers.CharField()


class ScanResultSerializer(serializers.Serializer):
    new = serializers.IntegerField()
    changed = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    missing = serializers.IntegerField(help_text="Registered files that are gone (marked invalid)")
    refused = RefusalSerializer(many=True)
    missing_roots = serializers.ListField(child=serializers.CharField())


class DatasetViewSet(ServiceWriteMixin, viewsets.ReadOnlyModelViewSet):
    """Datasets: JSONL or text files under the dataset roots, discovered by a scan or uploaded, and
    validated row by row. Nothing is deleted: jobs refer to them."""

    queryset = selectors.dataset_list()
    serializer_class = DatasetSerializer
    filterset_class = DatasetFilter
    search_fields = ["name", "description", "path"]
    ordering_fields = ["name", "created_at", "size_bytes", "rows", "validated_at"]
    parser_classes = [JSONParser, parsers.MultiPartParser, parsers.FormParser]
    create_input = DatasetUploadInput
    create_summary = (
        "Upload a dataset file (multipart `file`): written into the first dataset root, registered and "
        "validated (at once when under 1 MiB, else by a worker: its state is pending until then)"
    )
    update_input = DatasetUpdateInput
    create_refusals = {
        413: OpenApiResponse(
            description="The body is over the upload limit (MOC_DATASET_UPLOAD_MAX_BYTES and the multipart "
            "envelope): refused by nginx or Django before it is read"
        )
    }

    def get_parsers(self) -> list[parsers.BaseParser]:
        # An upload carries a file, which only a multipart body can: any other body is a 415.
        # (Read at dispatch, before DRF sets `action`; the schema generator sets `action` itself.)
        method = getattr(getattr(self, "request", None), "method", "") or ""
        action = getattr(self, "action", None) or getattr(self, "action_map", {}).get(method.lower())
        if action == "create":
            return [parsers.MultiPartParser()]
        return super().get_parsers()

    def create_with(self, data: dict[str, Any]) -> Dataset:
        return upload.dataset_upload(created_by=self.request.user, **data)

    def update_with(self, obj: Dataset, data: dict[str, Any]) -> Dataset:
        return services.dataset_update(dataset=obj, **data)

    @extend_schema(
        request=None,
        responses=ScanResultSerializer,
        summary="Scan the dataset roots now: register new files, mark changed and vanished ones; "
        "validations of new and changed files are queued",
    )
    @action(detail=False, methods=["post"])
    def scan(self, request: Request) -> Response:
        result = services.datasets_scan_request()
        return Response(ScanResultSerializer(result.as_json()).data)

    @extend_schema(
        request=None,
        responses={
            200: OpenApiResponse(DatasetSerializer, description="Validated at once (a small file)"),
            202: OpenApiResponse(
                DatasetSerializer, description="Queued: its state is pending until a worker is done"
            ),
        },
        summary="Validate the dataset's file again",
    )
    @action(detail=True, methods=["post"])
    def validate(self, request: Request, pk: str | None = None) -> Response:
        dataset = services.dataset_validate_request(dataset=self.get_object())
        code = status.HTTP_202_ACCEPTED if dataset.state == DatasetState.PENDING else status.HTTP_200_OK
        return self.respond(dataset, code)

    @extend_schema(
        parameters=[PreviewQuery],
        responses=PreviewSerializer,
        summary="The dataset's first rows, each with its split (train or eval); bad rows with their reason",
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def preview(self, request: Request, pk: str | None = None) -> Response:
        query = PreviewQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        dataset = self.get_object()
        shown = preview.preview(
            dataset, rows=query.validated_data["rows"], split=query.validated_data["split"]
        )
        body = {
            "split": query.validated_data["split"],
            "rows": [row.as_json() for row in shown.rows],
            "note": shown.note,
        }
        return Response(PreviewSerializer(body).data)
