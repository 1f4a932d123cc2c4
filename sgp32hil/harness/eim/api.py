"""Operator REST API of the eIM (JSON under ``/api/v1``) and its hand-written OpenAPI 3 document.

Errors are ``{"error": "...", "field": ...}`` with 400 (bad input), 404 (unknown order or EID) or 409
(an order that can no longer be cancelled).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .packages import KINDS, OrderError
from .service import RESULT_POLICIES, EimService, UnknownEid
from .store import StoreError

__all__ = ["API_PREFIX", "build_api", "openapi_document"]

API_PREFIX = "/api/v1"
MAX_JSON = 256 * 1024


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status)


async def _json_body(request: Request) -> Any:
    body = await request.body()
    if len(body) > MAX_JSON:
        raise OrderError(f"body larger than {MAX_JSON} bytes")
    try:
        return json.loads(body or b"null")
    except ValueError as exc:
        raise OrderError(f"body is not JSON: {exc}") from None


def _handle(fn):
    async def endpoint(request: Request) -> Response:
        try:
            return await fn(request)
        except OrderError as exc:
            return _error(400, str(exc), exc.field)
        except UnknownEid as exc:
            return _error(404, str(exc.args[0]), "eid")
        except KeyError as exc:
            return _error(404, str(exc.args[0]) if exc.args else "not found")
        except StoreError as exc:
            return _error(409, str(exc))
    return endpoint


def _order_id(request: Request) -> int:
    raw = request.path_params["order_id"]
    if not raw.isdigit():
        raise KeyError(f"no order {raw}")
    return int(raw)


def build_api(service: EimService) -> list[Route]:
    """The /api/v1 routes on ``service``."""

    async def create_order(request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise OrderError("expected a JSON object {eid, kind, ...params}")
        body = dict(body)
        eid, kind = body.pop("eid", None), body.pop("kind", None)
        if not isinstance(eid, str):
            raise OrderError("is required", "eid")
        if not isinstance(kind, str):
            raise OrderError(f"is required (one of {', '.join(KINDS)})", "kind")
        params = body.pop("params", None)
        if params is not None:
            if body or not isinstance(params, dict):
                raise OrderError("give the parameters either in 'params' or at the top level", "params")
            body = params
        order = await run_in_threadpool(service.create_order, eid, kind, **body)
        return JSONResponse(order.to_dict(), status_code=201)

    async def list_orders(request: Request) -> Response:
        eid, status = request.query_params.get("eid"), request.query_params.get("status")
        orders = await run_in_threadpool(service.orders, eid.upper() if eid else None, status)
        return JSONResponse({"orders": [o.to_dict() for o in orders]})

    async def get_order(request: Request) -> Response:
        order = service.get_order(_order_id(request))
        wait = request.query_params.get("wait")
        if wait is not None and not order.final:
            try:
                seconds = min(float(wait), 300.0)
            except ValueError:
                raise OrderError("expected seconds", "wait") from None
            try:
                order = await run_in_threadpool(service.wait_order, order.id, seconds)
            except TimeoutError:
                order = service.get_order(order.id)
        return JSONResponse(order.to_dict())

    async def cancel_order(request: Request) -> Response:
        order = await run_in_threadpool(service.cancel_order, _order_id(request))
        return JSONResponse(order.to_dict())

    async def list_euiccs(request: Request) -> Response:
        records = await run_in_threadpool(service.euiccs)
        return JSONResponse({"euiccs": [r.to_dict() for r in records]})

    async def register(request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise OrderError("expected a JSON object {eid, counter_value?, association_token?, "
                             "euicc_certificate?, result_policy?}")
        allowed = {"eid", "counter_value", "association_token", "euicc_certificate", "result_policy"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise OrderError(f"unknown field (allowed: {', '.join(sorted(allowed))})", unknown[0])
        if not isinstance(body.get("eid"), str):
            raise OrderError("is required", "eid")
        record = await run_in_threadpool(lambda: service.register_euicc(
            body["eid"], counter_value=body.get("counter_value", 0),
            association_token=body.get("association_token"), euicc_certificate=body.get("euicc_certificate"),
            result_policy=body.get("result_policy", "verify-if-known")))
        return JSONResponse(record.to_dict(), status_code=201)

    async def get_euicc(request: Request) -> Response:
        record = await run_in_threadpool(service.euicc, request.path_params["eid"])
        out = record.to_dict()
        out["notification_list"] = service.store.notifications(record.eid)
        return JSONResponse(out)

    async def events(request: Request) -> Response:
        eid = request.path_params["eid"]
        service.euicc(eid)
        events = await run_in_threadpool(service.events, eid)
        return JSONResponse({"events": [e.to_dict() for e in events]})

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    p = API_PREFIX
    return [
        Route(f"{p}/orders", _handle(create_order), methods=["POST"]),
        Route(f"{p}/orders", _handle(list_orders), methods=["GET"]),
        Route(f"{p}/orders/{{order_id}}", _handle(get_order), methods=["GET"]),
        Route(f"{p}/orders/{{order_id}}", _handle(cancel_order), methods=["DELETE"]),
        Route(f"{p}/euiccs", _handle(list_euiccs), methods=["GET"]),
        Route(f"{p}/euiccs", _handle(register), methods=["POST"]),
        Route(f"{p}/euiccs/{{eid}}", _handle(get_euicc), methods=["GET"]),
        Route(f"{p}/euiccs/{{eid}}/events", _handle(events), methods=["GET"]),
        Route(f"{p}/openapi.json", openapi, methods=["GET"]),
    ]


def build_api_app(service: EimService) -> Starlette:
    return Starlette(routes=build_api(service))


# --- OpenAPI 3 ------------------------------------------------------------------------------------------

def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_content(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _resp(description: str, schema: dict | None = None) -> dict:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = _json_content(schema)
    return out


_ERR = {"400": _resp("bad request", _ref("Error")), "404": _resp("unknown order or EID", _ref("Error"))}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.0 description of the /api/v1 endpoints."""
    eid_param = {"name": "eid", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9]{32}$"}}
    order_param = {"name": "order_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "sgp32-hil eIM operator API", "version": "1",
                 "description": "Orders for the bundled eIM (SGP.32 v1.2): PSMO/eCO eUICC packages, "
                                "IpaEuiccDataRequest, profile download triggers. The ESipa interface itself is "
                                "POST /gsma/rsp2/asn1 (DER, application/x-gsma-rsp-asn1)."},
        "paths": {
            f"{API_PREFIX}/orders": {
                "post": {"summary": "Queue an order for an eUICC (FIFO per EID)",
                         "requestBody": {"required": True, "content": _json_content(_ref("OrderRequest"))},
                         "responses": {"201": _resp("order queued", _ref("Order")), **_ERR}},
                "get": {"summary": "List orders",
                        "parameters": [{"name": "eid", "in": "query", "schema": {"type": "string"}},
                                       {"name": "status", "in": "query", "schema": {"type": "string"}}],
                        "responses": {"200": _resp("orders", {"type": "object", "properties": {
                            "orders": {"type": "array", "items": _ref("Order")}}})}},
            },
            f"{API_PREFIX}/orders/{{order_id}}": {
                "get": {"summary": "An order and its outcome",
                        "parameters": [order_param, {"name": "wait", "in": "query", "schema": {"type": "number"},
                                                     "description": "wait up to this many seconds for a final state"}],
                        "responses": {"200": _resp("the order", _ref("Order")), **_ERR}},
                "delete": {"summary": "Cancel a queued or sent order", "parameters": [order_param],
                           "responses": {"200": _resp("cancelled", _ref("Order")), **_ERR,
                                         "409": _resp("already final", _ref("Error"))}},
            },
            f"{API_PREFIX}/euiccs": {
                "get": {"summary": "Registered eUICCs",
                        "responses": {"200": _resp("eUICCs", {"type": "object", "properties": {
                            "euiccs": {"type": "array", "items": _ref("Euicc")}}})}},
                "post": {"summary": "Register or update an eUICC",
                         "requestBody": {"required": True, "content": _json_content(_ref("Registration"))},
                         "responses": {"201": _resp("registered", _ref("Euicc")), **_ERR}},
            },
            f"{API_PREFIX}/euiccs/{{eid}}": {
                "get": {"summary": "One eUICC: contact, counters, notifications", "parameters": [eid_param],
                        "responses": {"200": _resp("the eUICC", _ref("Euicc")), **_ERR}},
            },
            f"{API_PREFIX}/euiccs/{{eid}}/events": {
                "get": {"summary": "Event log of one eUICC", "parameters": [eid_param],
                        "responses": {"200": _resp("events", {"type": "object", "properties": {
                            "events": {"type": "array", "items": _ref("Event")}}}), **_ERR}},
            },
            f"{API_PREFIX}/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": _resp("OpenAPI 3 document",
                                                                               {"type": "object"})}},
            },
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "string"}, "field": {"type": "string", "nullable": True}}},
            "OrderRequest": {"type": "object", "required": ["eid", "kind"], "properties": {
                "eid": {"type": "string"}, "kind": {"type": "string", "enum": list(KINDS)},
                "psmos": {"type": "array", "items": {"type": "object"},
                          "description": "kind psmo: [{enable: {iccid, rollback}}, {disable: {iccid}}, "
                                         "{delete: {iccid}}, {listProfileInfo: {}}, {getRAT: {}}, "
                                         "{configureImmediateEnable: {enable, smdp_address}}, "
                                         "{setFallbackAttribute: {iccid}}, {unsetFallbackAttribute: {}}, "
                                         "{setDefaultDpAddress: {address}}]"},
                "ecos": {"type": "array", "items": {"type": "object"},
                         "description": "kind eco: [{addEim: {eim_id, fqdn, public_key_pem, counter_value, "
                                        "association_token}}, {deleteEim: {eim_id}}, {updateEim: {...}}, "
                                        "{listEim: {}}]"},
                "activation_code": {"type": "string", "description": "kind download"},
                "indirect": {"type": "boolean", "description": "kind download: the IPA must use the eIM relay"},
                "tags": {"type": "array", "items": {"type": "string"}, "description": "kind euicc_data: hex tags"},
                "params": {"type": "object", "description": "alternatively, the parameters in one object"}}},
            "Order": {"type": "object", "properties": {
                "id": {"type": "integer"}, "eid": {"type": "string"}, "kind": {"type": "string"},
                "params": {"type": "object"},
                "status": {"type": "string", "enum": ["queued", "sent", "done", "failed", "cancelled"]},
                "counter_value": {"type": "integer", "nullable": True},
                "eim_transaction_id": {"type": "string"}, "result": {"type": "object", "nullable": True},
                "error": {"type": "string", "nullable": True}, "source": {"type": "string"},
                "created_at": {"type": "number"}, "sent_at": {"type": "number", "nullable": True},
                "done_at": {"type": "number", "nullable": True}}},
            "Registration": {"type": "object", "required": ["eid"], "properties": {
                "eid": {"type": "string"}, "counter_value": {"type": "integer", "minimum": 0},
                "association_token": {"type": "integer", "nullable": True},
                "euicc_certificate": {"type": "string", "description": "PEM or hex DER"},
                "result_policy": {"type": "string", "enum": list(RESULT_POLICIES)}}},
            "Euicc": {"type": "object", "properties": {
                "eid": {"type": "string"}, "counter_value": {"type": "integer"},
                "association_token": {"type": "integer", "nullable": True},
                "euicc_certificate": {"type": "string", "nullable": True},
                "result_policy": {"type": "string"}, "registered": {"type": "number"},
                "first_contact": {"type": "number", "nullable": True},
                "last_contact": {"type": "number", "nullable": True}, "polls": {"type": "integer"},
                "last_rplmn": {"type": "string", "nullable": True},
                "last_state_change_cause": {"type": "string", "nullable": True},
                "notifications": {"type": "integer"}, "failed_attempts": {"type": "integer"},
                "notification_list": {"type": "array", "items": _ref("Notification")}}},
            "Notification": {"type": "object", "description": "a notification the IPA handed to the eIM; "
                             "forward_* tell its delivery to the notificationAddress (SM-DP+)", "properties": {
                "seq_number": {"type": "integer", "nullable": True}, "kind": {"type": "string"},
                "transaction_id": {"type": "string", "nullable": True},
                "forwarded_to": {"type": "string", "nullable": True},
                "forward_address": {"type": "string", "nullable": True},
                "forward_attempts": {"type": "integer"}, "forward_error": {"type": "string", "nullable": True},
                "received": {"type": "number"}}},
            "Event": {"type": "object", "properties": {
                "time": {"type": "number"}, "kind": {"type": "string"}, "detail": {"type": "object"}}},
        }},
    }
