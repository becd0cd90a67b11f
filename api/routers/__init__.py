"""One router per resource; the answers' models are in `api.schemas`.

A route's ``response_model`` validates and shapes its answer, and FastAPI writes it with pydantic's JSON
serialiser, as it did before the models, when each route's ``dict[str, Any]`` annotation was its model: the
answers' bytes (key order, floats such as ``0.000025``) are the same. A route that answers a `Response` itself
(the report ingest, readiness, the CSV export, the dashboard) is sent as it is; its model only documents it.
"""
