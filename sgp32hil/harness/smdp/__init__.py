"""The bundled SM-DP+ (SGP.22 v2.5 ES9+ and ES2+, SGP.32 metadata) for the virtual bench.

``SmdpStore`` (SQLite state, ``add_order`` for tests), ``SmdpService`` (the procedures),
``server.serve`` / ``server.run_in_thread`` (HTTPS listeners), ``load_preload`` (YAML orders).
"""

from .preload import PreloadError, load_preload
from .server import RunningSmdp, build_apps, run_in_thread, serve
from .service import HOST_ID, SmdpService
from .store import Order, ProfileState, Session, SmdpStore, StoreError, confirmation_code_hash

__all__ = [
    "HOST_ID",
    "Order",
    "PreloadError",
    "ProfileState",
    "RunningSmdp",
    "Session",
    "SmdpService",
    "SmdpStore",
    "StoreError",
    "build_apps",
    "confirmation_code_hash",
    "load_preload",
    "run_in_thread",
    "serve",
]
