"""One router per resource; the answers' models are in `api.schemas`.

Each router sets ``default_response_class=JSONResponse``. FastAPI's default would, for a route with a response
model, write the JSON with pydantic's serialiser, which spells some floats differently from ``json.dumps``
(``1e-07`` becomes ``1e-7``, ``2.5e-05`` becomes ``0.000025``); with `JSONResponse` the model still validates
and shapes the answer, and ``json.dumps`` writes it as it always has, so the answers' bytes do not change.
"""
