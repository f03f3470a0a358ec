FROM python:3.11-slim
WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY web web
COPY worker worker
COPY shared shared
COPY sql sql
COPY templates templates
RUN pip install --no-cache-dir -e . && useradd --system --uid 10001 taskdeck
USER 10001
ENV LOG_FORMAT=json
EXPOSE 8080
CMD ["taskdeck", "web", "--host", "0.0.0.0", "--port", "8080"]
