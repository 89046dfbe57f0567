# The homewatt image: exporter, backfill, reference partner and nightly scheduler
# (docker-compose.yml runs one service per command).  promtool and thanos come
# from the pinned upstream images the stack runs, so the backfill builds blocks
# with the same promtool as the Prometheus that serves them and uploads them
# with the Thanos of the stack.
ARG PROMETHEUS_IMAGE=prom/prometheus:v2.42.0
ARG THANOS_IMAGE=quay.io/thanos/thanos:v0.42.4

FROM ${PROMETHEUS_IMAGE} AS prometheus
FROM ${THANOS_IMAGE} AS thanos

FROM python:3.11.11-slim-bookworm
COPY --from=prometheus /bin/promtool /usr/local/bin/promtool
COPY --from=thanos /bin/thanos /usr/local/bin/thanos

WORKDIR /opt/homewatt
# Dependencies first, from the same lock files as `make`: a code change does not reinstall them.
COPY requirements.lock requirements-nodeps.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock \
 && pip install --no-cache-dir --no-deps --require-hashes -r requirements-nodeps.lock
COPY homewatt/ homewatt/
COPY exporter/ exporter/
COPY backfill/ backfill/
COPY partner_job/ partner_job/
COPY reference_partner/ reference_partner/
COPY alertmanager/ alertmanager/
COPY prometheus/ prometheus/
COPY rules/ rules/
COPY thanos/ thanos/

# The code runs from /opt/homewatt (python -m adds it to sys.path), so the
# repository layout that homewatt/config.py expects holds in the image too.
RUN useradd --uid 10001 --create-home homewatt && mkdir /data && chown homewatt /data
USER homewatt
ENV HOMEWATT_DATA=/data PYTHONUNBUFFERED=1
VOLUME ["/data"]
