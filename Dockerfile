# One image for the webhook receiver and the dashboard (pick with the command).
#   receiver:  python -m analyzers serve --host 0.0.0.0 --port 8000
#   dashboard: streamlit run dashboard/app.py --server.address 0.0.0.0 --server.port 8501
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY analyzers/ analyzers/
COPY dashboard/ dashboard/
COPY .streamlit/ .streamlit/

RUN useradd --create-home --uid 10001 app && mkdir -p /data && chown app /data
USER 10001
EXPOSE 8000 8501
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["python", "-m", "analyzers", "serve", "--host", "0.0.0.0", "--port", "8000", "--store", "sqlite:////data/deploys.db"]
