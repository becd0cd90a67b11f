# Suanli images: the census service and the node agent, from one recipe (no docker on the development machines:
# tests/deploy/test_image.py checks the facts below; build and run it where docker is).
#
#   docker build --target server -t suanli/server:0.1.0 .   # `suanli serve` (the Helm chart's api.image)
#   docker build --target agent  -t suanli/agent:0.1.0 .    # `census-agent run` (the chart's agent.image)
#
# Both install exactly what uv.lock pins (uv sync --locked); the only network used at build time is PyPI (and
# the base image's registry). The agent image is the base install: no FastAPI, SQLAlchemy or Ray. Both run as
# the unprivileged user 10001 and work on a read-only root filesystem (bytecode is compiled at build time).

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---- build: one virtual environment per image, in /opt/venv ---------------------------------------------------
FROM ${PYTHON_IMAGE} AS build-base
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/opt/venv \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m pip install uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./

FROM build-base AS agent-build
# Dependencies first (a layer that survives source edits), then the project itself, not editable.
RUN uv sync --locked --no-dev --no-install-project
COPY census_agent ./census_agent
COPY scheduler ./scheduler
COPY api ./api
COPY seeds ./seeds
RUN uv sync --locked --no-dev --no-editable

FROM build-base AS server-build
RUN uv sync --locked --no-dev --extra server --no-install-project
COPY census_agent ./census_agent
COPY scheduler ./scheduler
COPY api ./api
COPY seeds ./seeds
RUN uv sync --locked --no-dev --extra server --no-editable

# ---- runtime images ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 suanli \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin suanli
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
LABEL org.opencontainers.image.source="https://suanli.io" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"

FROM runtime AS agent
COPY --from=agent-build /opt/venv /opt/venv
LABEL org.opencontainers.image.title="suanli census agent"
# The host's proc/ and sys/ are expected under /host (the chart mounts them read-only; SUANLI_AGENT_ROOT=/host).
USER 10001:10001
EXPOSE 9464
ENTRYPOINT ["census-agent"]
CMD ["run"]

FROM runtime AS server
COPY --from=server-build /opt/venv /opt/venv
LABEL org.opencontainers.image.title="suanli census service"
# /data: the SQLite database and the admin token file, read if present, else generated there, never printed
# (the chart mounts its admin-token Secret and points SUANLI_ADMIN_TOKEN_FILE at it instead).
RUN mkdir /data && chown 10001:10001 /data
WORKDIR /data
ENV SUANLI_HOST=0.0.0.0 SUANLI_PORT=8080 SUANLI_DATABASE_URL=sqlite:////data/suanli.db \
    SUANLI_ADMIN_TOKEN_FILE=/data/admin.token
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["suanli"]
CMD ["serve"]
