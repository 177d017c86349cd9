# One image for the webhook receiver, the verification worker and the dashboard (pick with the
# command; docker-compose.yml runs all three):
#   receiver:  deploy-verify serve --host 0.0.0.0 --port 8000          (the default)
#   worker:    deploy-verify worker --poll 5
#   dashboard: python -m dashboard --server.address 0.0.0.0 --server.port 8501
#              (Streamlit, its heavy imports done before the port opens)
# Runtime only: requirements.txt's pins and the package; no test or lint tool is installed.

# --- builder: every wheel the runtime needs, built once ------------------------------------
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements.txt pyproject.toml README.md ./
RUN pip wheel --wheel-dir /wheels -r requirements.txt
COPY analyzers/ analyzers/
COPY dashboard/ dashboard/
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- runtime: slim Python, the wheels, a non-root user -------------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY --from=builder /wheels /tmp/wheels
# --no-index: only the wheels built above (the pinned set) can be installed.
RUN pip install --no-index --find-links=/tmp/wheels /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && ln -s "$(python -c 'import dashboard, os; print(os.path.dirname(dashboard.__file__))')" /app/dashboard \
    && useradd --create-home --uid 10001 app \
    && mkdir -p /data \
    && chown app /data
# Streamlit reads ./.streamlit/config.toml (headless, no usage stats, no tracebacks to viewers).
COPY .streamlit/ .streamlit/
USER 10001
EXPOSE 8000 8501
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["deploy-verify", "serve", "--host", "0.0.0.0", "--port", "8000", "--store", "sqlite:////data/deploys.db"]
