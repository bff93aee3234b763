# syntax=docker/dockerfile:1
#
# navidrome-litefs: LiteFS (the entrypoint, under the container's init) mounts
# /data and runs the supervisor, which runs Navidrome only on the primary.
#
# One glibc base runs all three binaries: `deno compile` output is glibc-linked,
# Navidrome's release archives are static glibc builds (the binary in its
# official image is musl-linked since v0.62, so it is not copied from there),
# and LiteFS is a static Go binary.
#
# Build:  docker build -t <registry>/navidrome-litefs:<version> .

# --- supervisor --------------------------------------------------------------
# `deno task compile` is the only way the supervisor is built, so its
# permission flags live in deno.json alone. deno compile downloads its runtime
# (denort) here, which is why the binary is built in this stage.
FROM denoland/deno:debian-2.9.6@sha256:2014dc167ece617ef7e7ba40631ac2234c59e75ce693e7cc2dc2602b3c87859d AS supervisor
WORKDIR /src
COPY deno.json deno.lock main.ts ./
COPY lib/ lib/
RUN deno task compile

# --- navidrome ---------------------------------------------------------------
# The release archive, verified against the checksum published with the
# release (navidrome_checksums.txt). Changing NAVIDROME_VERSION without both
# checksums fails the build instead of installing an unverified binary.
FROM debian:bookworm-slim AS navidrome
ARG NAVIDROME_VERSION=0.63.2
ARG NAVIDROME_SHA256_AMD64=224c6d6fe5cc11a9c9387b97988666423de38bb5ef2e2f43ecc43d0a3dded4f0
ARG NAVIDROME_SHA256_ARM64=5b74fb0eea5d48e3eb7565ea4116284232509e94431cb3756aaac2128dd50a43
ARG TARGETARCH
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
RUN set -eu; \
    case "${TARGETARCH}" in \
      amd64) sha256="${NAVIDROME_SHA256_AMD64}" ;; \
      arm64) sha256="${NAVIDROME_SHA256_ARM64}" ;; \
      *) echo "no Navidrome checksum for architecture '${TARGETARCH}'" >&2; exit 1 ;; \
    esac; \
    curl -fsSL -o /tmp/navidrome.tar.gz \
      "https://github.com/navidrome/navidrome/releases/download/v${NAVIDROME_VERSION}/navidrome_${NAVIDROME_VERSION}_linux_${TARGETARCH}.tar.gz"; \
    echo "${sha256}  /tmp/navidrome.tar.gz" | sha256sum -c -; \
    mkdir -p /tmp/navidrome; \
    tar -xzf /tmp/navidrome.tar.gz -C /tmp/navidrome; \
    install -D -m 0755 /tmp/navidrome/navidrome /app/navidrome

# --- runtime -----------------------------------------------------------------
FROM debian:bookworm-slim
# ffmpeg: Navidrome's transcoder; fuse3: fusermount3, which LiteFS mounts
# through; ca-certificates: HTTPS for Navidrome's external integrations.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates ffmpeg fuse3 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=flyio/litefs:0.5.14 /usr/local/bin/litefs /usr/local/bin/litefs
COPY --from=supervisor /src/dist/navidrome-litefs-supervisor /usr/local/bin/navidrome-litefs-supervisor
COPY --from=navidrome /app/navidrome /app/navidrome
COPY litefs.yml /etc/litefs.yml
COPY navidrome.toml /etc/navidrome/navidrome.toml
# Mount points: /data is LiteFS's FUSE mount (created empty here, LiteFS
# mounts over it); the others are Nomad volumes.
RUN mkdir -p /data /var/lib/litefs /shared_data /music
WORKDIR /app
EXPOSE 4533 20202
# No HEALTHCHECK: replicas run no Navidrome by design, so a /ping check would
# mark every healthy replica unhealthy. Health is the Consul service's checks
# (primary only) and LiteFS's API on every node; see docs/deployment.md.
ENTRYPOINT ["litefs", "mount"]
