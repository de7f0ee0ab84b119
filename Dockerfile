# The callassist server: HTTP, signaling, media, speech-to-text and suggestions in one process.
#   docker-compose build            (compose.yaml), or: docker build -t callassist .
# See docs/admin.md for the ports, the TURN server and the database.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/callassist \
        --shell /usr/sbin/nologin callassist \
    && mkdir /data \
    && chown callassist:callassist /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY server ./server
COPY signaling ./signaling
COPY media ./media
COPY static ./static
RUN pip install .

# The code runs from /app (PYTHONPATH), where the pages (static/) and the bundled knowledge
# files live next to it; the installed copy provides the dependencies and entry points.
ENV PYTHONPATH=/app \
    CALLASSIST_HOST=0.0.0.0 \
    CALLASSIST_PORT=8080 \
    CALLASSIST_DATA_DIR=/data

USER callassist
# The data dir holds the SQLite database, the token signing key and any recordings.
VOLUME ["/data"]
EXPOSE 8080

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request as r; h = os.environ.get('CALLASSIST_HOST', ''); h = '127.0.0.1' if h in ('', '0.0.0.0', '::') else h; r.urlopen('http://%s:%s/health' % (h, os.environ.get('CALLASSIST_PORT', '8080')), timeout=4)" || exit 1

CMD ["python", "-m", "server", "serve"]
