"""REST endpoints of the DICOM network: nodes (clinic admins write, members read) and a case's
outbox. Views parse and answer; services and selectors do the work."""

from __future__ import annotations

import json

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.cases.selectors import case_get
from clinic_platform.api import validated_input

from .fhir import case_fhir_bundle
from .models import DicomNode
from .selectors import case_outbox_state, node_get, node_list
from .services import node_create, node_deactivate, node_update, stow_store
from .stow import StowRequestError, check_content_type, response_body, response_status, split_parts


class DicomNodeOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    ae_title = serializers.CharField()
    host = serializers.CharField()
    port = serializers.IntegerField()
    send_results = serializers.BooleanField()
    is_active = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class DicomNodeInputSerializer(serializers.Serializer):
    ae_title = serializers.CharField(max_length=16)
    host = serializers.CharField(max_length=255)
    port = serializers.IntegerField(min_value=1, max_value=65535)
    send_results = serializers.BooleanField(required=False, default=False)
    is_active = serializers.BooleanField(required=False, default=True)


class DicomNodeListApi(GenericAPIView):
    serializer_class = DicomNodeOutputSerializer

    @extend_schema(responses=DicomNodeOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(node_list(user=request.user))
        audit_record(actor=request.user, action=AuditAction.VIEW, object_type="dicom_node", request=request,
                     detail="list")  # fmt: skip
        return self.get_paginated_response(DicomNodeOutputSerializer(page, many=True).data)

    @extend_schema(request=DicomNodeInputSerializer, responses={201: DicomNodeOutputSerializer})
    def post(self, request: Request) -> Response:
        node = node_create(created_by=request.user, **validated_input(DicomNodeInputSerializer, request))
        return Response(DicomNodeOutputSerializer(node).data, status=status.HTTP_201_CREATED)


class DicomNodeDetailApi(APIView):
    @extend_schema(responses=DicomNodeOutputSerializer)
    def get(self, request: Request, node_id: int) -> Response:
        node = node_get(user=request.user, node_id=node_id)
        audit_record(actor=request.user, action=AuditAction.VIEW, obj=node, object_type="dicom_node", request=request)
        return Response(DicomNodeOutputSerializer(node).data)

    @extend_schema(request=DicomNodeInputSerializer(partial=True), responses=DicomNodeOutputSerializer)
    def patch(self, request: Request, node_id: int) -> Response:
        node = node_get(user=request.user, node_id=node_id)
        fields = validated_input(DicomNodeInputSerializer, request, partial=True)
        changes = {key: value for key, value in fields.items() if key in request.data}
        node = node_update(node=node, changed_by=request.user, **changes)
        return Response(DicomNodeOutputSerializer(node).data)

    @extend_schema(responses=DicomNodeOutputSerializer, description="Deactivate: its associations are refused.")
    def delete(self, request: Request, node_id: int) -> Response:
        node: DicomNode = node_get(user=request.user, node_id=node_id)
        node = node_deactivate(node=node, changed_by=request.user)
        return Response(DicomNodeOutputSerializer(node).data)


class OutboxItemOutputSerializer(serializers.Serializer):
    """An outbox row, or (kind "instance", state "failed", no id) a received instance whose
    unpacking failed, so nothing of it will be sent."""

    id = serializers.IntegerField(allow_null=True)
    kind = serializers.CharField()
    verified = serializers.BooleanField()
    node = serializers.CharField(source="node.ae_title", allow_null=True)  # null: a failed STOW-RS instance
    state = serializers.CharField()
    attempts = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField()
    objects_sent = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    sent_at = serializers.DateTimeField(allow_null=True)


class CaseDicomOutboxApi(APIView):
    """What is being sent back to the PACS for a case, and how far it got."""

    @extend_schema(responses=OutboxItemOutputSerializer(many=True))
    def get(self, request: Request, case_id: int) -> Response:
        case = case_get(user=request.user, case_id=case_id)
        audit_record(actor=request.user, action=AuditAction.VIEW, obj=case, request=request, detail="dicom outbox")
        return Response(OutboxItemOutputSerializer(case_outbox_state(case_id=case.pk), many=True).data)


class DicomJsonRenderer(JSONRenderer):
    media_type = "application/dicom+json"
    format = "dicomjson"


@extend_schema(exclude=True)  # DICOMweb, not the platform's JSON API: docs/pacs.md
class StowRsApi(APIView):
    """STOW-RS: `POST /dicomweb/studies` with an API token, a multipart/related body of
    application/dicom parts; answered in DICOM JSON. The body is read here as raw bytes (no
    form parsing), up to UPLOAD_MAX_REQUEST_BYTES."""

    renderer_classes = [DicomJsonRenderer, JSONRenderer]

    def post(self, request: Request) -> Response:
        try:
            boundary = check_content_type(request.content_type or "")
        except StowRequestError as exc:
            raise exceptions.UnsupportedMediaType(request.content_type, detail=exc.args[0]) from None
        limit = settings.UPLOAD_MAX_REQUEST_BYTES
        body = request._request.read(limit + 1)
        if len(body) > limit:
            raise RequestDataTooBig(f"The body is over {limit // 2**20} MB.")
        try:
            parts = split_parts(body, boundary)
        except StowRequestError as exc:
            raise exceptions.ValidationError({"body": [exc.args[0]]}) from None
        results = stow_store(parts=parts, user=request.user)
        return Response(
            response_body(results, request.build_absolute_uri()), status=response_status(results),
            content_type="application/dicom+json",
        )  # fmt: skip


class CaseFhirApi(APIView):
    """The case as a FHIR R5 Bundle: DiagnosticReport, Observation per finding, ImagingStudy."""

    @extend_schema(responses={200: {"type": "object", "description": "FHIR R5 Bundle (type collection)"}})
    def get(self, request: Request, case_id: int) -> Response:
        case = case_get(user=request.user, case_id=case_id)
        bundle = case_fhir_bundle(case)
        audit_record(actor=request.user, action=AuditAction.EXPORT, obj=case, request=request, detail="fhir bundle")
        return Response(json.loads(bundle.model_dump_json(exclude_none=True)))
