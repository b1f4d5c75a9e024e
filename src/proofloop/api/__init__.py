"""The proof service behind `proofloop serve`: a FastAPI app over the run store.

    >>> from proofloop.api import ServeSettings, create_app
    >>> app = create_app(ServeSettings(db=":memory:"))       # the simulator as model
    >>> app.title, "/v1/prove" in app.openapi()["paths"]
    ('proofloop', True)

- app.py: create_app(settings, routers=[Mount(router, prefix, auth)]), errors, limits, /metrics
- routes.py: the /v1 endpoints; schemas.py: their request bodies
- workers.py: runs executed in background threads through runs/execute.py, resumed on restart
- events.py: a run's progress as server-sent events derived from the store (Last-Event-ID)
- views.py: what the API (and the viewer) shows of runs; metrics.py: Prometheus series
- settings.py: ServeSettings, Limits, tokens; auth.py: the bearer-token dependency
- viewer/: the web pages (server-rendered); markdown.py: model output to safe HTML + MathML
"""

from proofloop.extras import require

require("fastapi", "serve", "proofloop serve")

from proofloop.api.app import Mount, Services, create_app, services  # noqa: E402
from proofloop.api.auth import require_token  # noqa: E402
from proofloop.api.settings import Limits, ServeSettings, load_tokens  # noqa: E402

__all__ = ["Mount", "Services", "create_app", "services", "require_token", "Limits", "ServeSettings", "load_tokens"]
