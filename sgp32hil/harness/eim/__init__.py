"""The bundled eIM (SGP.32 v1.2): ESipa server, eUICC packages, orders, operator API, state in SQLite.

``EimStore`` (SQLite), ``EimService`` (orders, ESipa functions §5.14, package signing §2.11), ``EsipaRelay``
(indirect download over ES9+), ``run_in_thread`` / ``serve`` (HTTPS listener), ``load_policy`` (YAML
profile selection policy).
"""

from .esipa import CONTENT_TYPE, ESIPA_PATH, MAX_BODY, EsipaAnswer, dispatch
from .packages import OrderError
from .policy import Policy, PolicyError, load_policy, parse_policy
from .relay import EsipaRelay
from .server import RunningEim, build_app, run_in_thread, serve
from .service import RESULT_POLICIES, EimService, UnknownEid
from .store import EimStore, EuiccRecord, Event, Order, OrderStatus, StoreError

__all__ = [
    "CONTENT_TYPE",
    "ESIPA_PATH",
    "MAX_BODY",
    "RESULT_POLICIES",
    "EimService",
    "EimStore",
    "EsipaAnswer",
    "EsipaRelay",
    "EuiccRecord",
    "Event",
    "Order",
    "OrderError",
    "OrderStatus",
    "Policy",
    "PolicyError",
    "RunningEim",
    "StoreError",
    "UnknownEid",
    "build_app",
    "dispatch",
    "load_policy",
    "parse_policy",
    "run_in_thread",
    "serve",
]
