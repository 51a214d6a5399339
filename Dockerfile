# swapd's container image: the web UI built in a node stage, the wheel in a Python stage, and a
# slim runtime that installs only the wheel and runs as the unprivileged user `swapd`.
#
#   docker build -t swapd .
#   docker run -d --name swapd --network host \
#     -v ~/.config/swapd:/config:ro \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     --group-add "$(stat -c %g /var/run/docker.sock)" \
#     swapd serve --listen 127.0.0.1:8080
#
# docs/deploy.md explains the socket's group, host networking and the ports. CI cannot pull base
# images: tests/packaging/test_dockerfile.py runs these stages' commands without Docker.

# --- the web UI (ui/ → src/swapd/web/dist) ------------------------------------------------
FROM node:22-bookworm-slim AS ui
WORKDIR /src/ui
COPY ui/package.json ui/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY ui/ ./
RUN npm run build

# --- the wheel, carrying the UI built above and the native relay (the full image has gcc) --
FROM python:3.12-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml hatch_build.py README.md LICENSE ./
COPY src/ src/
COPY recipes/ recipes/
COPY --from=ui /src/src/swapd/web/dist/ src/swapd/web/dist/
# No ui/ in this stage: hatch_build.py keeps the dist it finds instead of running npm.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir wheels .

# --- the runtime ---------------------------------------------------------------------------
FROM python:3.12-slim-bookworm
ARG SWAPD_UID=10001
ARG SWAPD_GID=10001
RUN groupadd --gid "$SWAPD_GID" swapd \
    && useradd --uid "$SWAPD_UID" --gid swapd --create-home --shell /usr/sbin/nologin swapd \
    && install -d -o swapd -g swapd /home/swapd/.local /home/swapd/.local/state
COPY --from=wheel /src/wheels/ /tmp/wheels/
RUN pip install --no-cache-dir /tmp/wheels/*.whl && rm -rf /tmp/wheels
USER swapd
# Mount your config directory here: `serve` uses ./config.yaml, or the demo when there is none.
WORKDIR /config
ENV PYTHONUNBUFFERED=1
# Engine records, learned memory needs, KV caches (serve --state-dir's default).
VOLUME ["/home/swapd/.local/state"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]
ENTRYPOINT ["swapd"]
# Every interface inside the container, so a published port (-p 8080:8080) reaches it; set
# apiKeys in the config before publishing beyond the host (docs/deploy.md).
CMD ["serve", "--listen", "0.0.0.0:8080"]
