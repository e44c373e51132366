# syntax=docker/dockerfile:1
#
# One image for linux/amd64 and linux/arm64, from one build:
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t <registry>/pullthrough:<tag> --push .
#
# or for the machine's own platform: docker build -t pullthrough .
#
# The builder runs on the build machine's platform and cross-compiles for each target platform,
# so no stage runs under emulation. The binary links glibc dynamically, so it is built on Debian 12
# (bookworm), the release of the runtime image: a binary built against a newer glibc would not
# start on cc-debian12.

FROM --platform=$BUILDPLATFORM rust:1.95-bookworm AS build
# Set by BuildKit for each platform of the build.
ARG TARGETARCH
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
WORKDIR /src

# The Rust target, and a C cross-compiler when the target is not the build machine's own
# architecture: aws-lc-sys compiles AWS-LC with the cc crate (no cmake, except for FIPS builds)
# and needs a C toolchain for the target. Debian's cross packages build against the same glibc.
# Debian package versions are not pinned: the base image's release fixes them.
# hadolint ignore=DL3008
RUN case "$TARGETARCH" in \
      amd64) triple=x86_64-unknown-linux-gnu; gnu=x86_64-linux-gnu ;; \
      arm64) triple=aarch64-unknown-linux-gnu; gnu=aarch64-linux-gnu ;; \
      *) echo "unsupported TARGETARCH '$TARGETARCH': build for linux/amd64 or linux/arm64" >&2; exit 1 ;; \
    esac; \
    if [[ $(dpkg --print-architecture) != "$TARGETARCH" ]]; then \
      apt-get update; \
      apt-get install -y --no-install-recommends "gcc-${gnu//_/-}" "libc6-dev-${TARGETARCH}-cross"; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    rustup target add "$triple"; \
    env_triple=${triple//-/_}; \
    { \
      echo "export TARGET_TRIPLE=$triple"; \
      echo "export CARGO_TARGET_${env_triple^^}_LINKER=$gnu-gcc"; \
      echo "export CC_$env_triple=$gnu-gcc"; \
      echo "export AR_$env_triple=$gnu-ar"; \
    } >/etc/pullthrough-target.sh

COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
# The manifest names the benchmark target, so its source must be there for cargo to read it.
COPY benches ./benches
# The commit `pullthrough --version` reports (the build context holds no .git); declared here so
# that a new commit does not invalidate the toolchain layer above.
ARG PULLTHROUGH_GIT_COMMIT=""
# The registry and the target directory live in BuildKit caches (one target directory per
# architecture, so the two builds do not wait on each other's lock): a rebuild after a source
# change recompiles only this crate.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=pullthrough-target-$TARGETARCH \
    . /etc/pullthrough-target.sh; \
    cargo build --locked --release --target "$TARGET_TRIPLE"; \
    cp "target/$TARGET_TRIPLE/release/pullthrough" /usr/local/bin/pullthrough

FROM gcr.io/distroless/cc-debian12:nonroot
# The SBOM that `--sbom=true` attaches also catalogues the build context, whose Cargo.lock lists
# the crates compiled in: the binary itself carries no dependency list a scanner can read.
ARG BUILDKIT_SBOM_SCAN_CONTEXT=true
COPY --from=build /usr/local/bin/pullthrough /pullthrough
USER 65532:65532
# 8443: HTTPS admission endpoint; 8080: /healthz, /readyz, /metrics.
EXPOSE 8443 8080
ENTRYPOINT ["/pullthrough"]
