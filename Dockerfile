# One image for every swc service (migrate, ingest, api, gateway, sim).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md constraints.txt swc_cli.py ./
COPY protocol protocol
COPY analytics analytics
COPY firmware_sim firmware_sim
COPY gateway gateway
COPY ingest ingest
# [server]: ingest, API, migrations; the broker is its own container (no amqtt)
RUN pip install --no-cache-dir -c constraints.txt '.[server]' && useradd --system --uid 1000 swc \
    && mkdir /data && chown swc /data
USER swc
ENTRYPOINT []
CMD ["swc", "--help"]
