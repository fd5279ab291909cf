# The driftline worker image (used by docker-compose.yaml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY driftline ./driftline
RUN pip install --no-cache-dir -c constraints.txt .
COPY config ./config
USER nobody
ENTRYPOINT []
CMD ["driftline", "--config", "/app/config/driftline.yaml", "worker"]
