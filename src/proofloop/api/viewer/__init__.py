"""The web viewer: server-rendered pages over the run store (see routes.py).

    >>> from proofloop.store import Store
    >>> router = viewer_router(Store(":memory:"))
    >>> sorted(r.name for r in router.routes if r.name.startswith(("viewer_run", "viewer_pro")))
    ['viewer_problem', 'viewer_proof', 'viewer_run', 'viewer_runs']
"""

from proofloop.api.viewer.routes import viewer_router

__all__ = ["viewer_router"]
