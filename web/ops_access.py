"""Who may read the operational endpoints: METRICS_TOKEN guards /metrics and the detail of /ready.

Without the token /ready still answers its status code and up/down per dependency (what a load
balancer or orchestrator needs), but no host names, latencies, counts or error names.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from shared.errors import Unauthorized
from shared.security import bearer_matches
from web.keys import SETTINGS


def presents_ops_token(request: web.Request) -> bool:
    """True when METRICS_TOKEN is set and the request carries it as ``Authorization: Bearer``."""
    return bearer_matches(request.headers.get("Authorization", ""), request.app[SETTINGS].metrics_token)


def require_ops_token(request: web.Request) -> None:
    """/metrics: open when no METRICS_TOKEN is configured, else the token is required."""
    if request.app[SETTINGS].metrics_token and not presents_ops_token(request):
        raise Unauthorized("This endpoint needs Authorization: Bearer <METRICS_TOKEN>")


def may_see_details(request: web.Request) -> bool:
    """The token, or a development machine (where nothing is configured and everything is local)."""
    return presents_ops_token(request) or request.app[SETTINGS].is_development


def strip_details(value: Any) -> Any:
    """Only the shape and every ``status``: dicts keep their "status" and nested structures, lists
    keep their order (replicas are named by index), every other field is dropped.
    """
    if isinstance(value, dict):
        kept = {key: strip_details(item) for key, item in value.items() if isinstance(item, (dict, list))}
        if "status" in value:
            kept["status"] = value["status"]
        return kept
    if isinstance(value, list):
        return [strip_details(item) for item in value]
    return value
