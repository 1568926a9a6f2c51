# One image, two roles: MODE=master or MODE=slave (default).
#   docker build -t airclass .
#   docker run -e MODE=slave -e SECRET_KEY=... -p 1935:1935 -p 8888:8888 -p 8000:8000 airclass

# hls.js for the pages, from npm, without node in the final image.
FROM node:20-slim AS web
WORKDIR /src
COPY package.json ./
RUN npm install --omit=dev --no-audit --no-fund --loglevel=error

# Wheels for the package and its dependencies (PyAV ships FFmpeg inside its wheel).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY airclass ./airclass
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MODE=slave \
    BIND_HOST=0.0.0.0 \
    API_PORT=8000 \
    HLS_PORT=8888 \
    RTMP_PORT=1935 \
    AIRCLASS_NODE_MODULES=/opt/airclass/node_modules
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin airclass
COPY --from=web /src/node_modules/hls.js/dist /opt/airclass/node_modules/hls.js/dist
USER airclass
EXPOSE 8000 8888 1935
# The API port answers /health on both roles.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('API_PORT', '8000'), timeout=2)"]
# python -m airclass reads MODE; SIGTERM reaches it directly (exec form), so slaves unregister.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "airclass"]
