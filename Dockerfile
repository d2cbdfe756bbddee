# One image for every MOC role: web, ws, the Celery workers, beat and the migrate job.
# compose.yaml picks the command; the default is the web server.
#   docker build -t moc .
FROM python:3.11-slim-bookworm

# NVIDIA_DRIVER_CAPABILITIES: "utility" is what mounts NVML (nvidia-ml-py) into a GPU container.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MOC_VAR_DIR=/app/var \
    MOC_HEALTHCHECK_URL=http://127.0.0.1:8001/healthz \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

RUN groupadd --system --gid 10001 moc \
 && useradd --system --uid 10001 --gid moc --home-dir /app --no-create-home --shell /usr/sbin/nologin moc

WORKDIR /app

# Dependencies get their own layer, rebuilt only when pyproject.toml changes: install the
# project from an empty stub of itself, then remove the stub and keep what it pulled in.
COPY pyproject.toml ./
RUN mkdir -p moc_site apps \
 && touch moc_site/__init__.py apps/__init__.py README.md \
 && pip install . \
 && pip uninstall -y moc \
 && rm -rf moc_site apps README.md build ./*.egg-info

COPY . .
# Editable, so the code runs from /app, where settings find templates/ and static/.
# collectstatic must import the settings, which want a SECRET_KEY in production: this
# throwaway one lives only for this command and is not in the image.
RUN pip install --no-deps -e . \
 && SECRET_KEY=collectstatic-only MOC_PRODUCTION=true python manage.py collectstatic --noinput \
 && chown moc:moc /app/var

USER moc
EXPOSE 8001 8002

# compose.yaml points ws at its own port and turns this off for the workers, beat and migrate.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; url = os.environ.get('MOC_HEALTHCHECK_URL'); sys.exit(0 if not url or urllib.request.urlopen(url, timeout=4).status == 200 else 1)"]

CMD ["gunicorn", "moc_site.wsgi:application", "--bind", "0.0.0.0:8001", "--workers", "2", "--threads", "4", \
     "--worker-class", "gthread", "--config", "deploy/gunicorn.conf.py"]
