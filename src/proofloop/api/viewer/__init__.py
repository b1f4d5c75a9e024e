"""The web viewer: server-rendered pages over the run store (see routes.py).

    >>> from proofloop.store import Store
    >>> router = viewer_router(Store(":memory:"))
    >>> sorted(r.name for r in router.routes)[:3]
    ['viewer_bench', 'viewer_problem', 'viewer_proof']
"""

from proofloop.api.viewer.routes import viewer_router

__all__ = ["viewer_router"]
