"""The API's answers as pydantic models: one module per resource, the shapes the routes declare.

Naming follows the FastAPI full-stack template: ``XPublic`` is one resource as the API shows it, ``XPage`` a
page of them with its cursor, ``XCreated`` the answer to a creation (the only place a secret appears).  The
routes declare these as ``response_model`` so that ``/openapi.json`` describes every answer, responses are
checked against them (a route that drifts from its model answers 500, and the fuzzer's conformance check
fails), and the SDK can be typed with them.

Must not: import FastAPI, Starlette, SQLAlchemy, Ray, kubernetes, httpx or any other ``api`` module (an
import-linter contract says so): only pydantic, the standard library and the pure models of ``census_agent``
and ``scheduler``, so a client can use the schemas without the server's stack.  They describe today's answers
byte for byte: field order is the answers' key order, times are the ISO 8601 strings the routes write (`Timestamp`),
and a figure that may be an integer or a float is a `Number`, never coerced.
"""
