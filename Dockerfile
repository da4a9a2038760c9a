# A pipeline worker image: `docker compose up` runs it next to the official apache/kafka image.
FROM python:3.11-slim
WORKDIR /srv/stock-sync
COPY pyproject.toml README.md ./
COPY app ./app
COPY agents ./agents
COPY tables ./tables
RUN pip install --no-cache-dir .
ENV DATA_DIR=/var/lib/stock-sync WEB_HOST=0.0.0.0 WEB_PORT=6066
EXPOSE 6066
CMD ["python", "-m", "app.cli", "worker"]
