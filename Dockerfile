# syntax=docker/dockerfile:1
#
# docker build -t pullthrough .
#
# The binary links glibc dynamically, so it is built on Debian 12 (bookworm), the same release as
# the runtime image: a binary built against a newer glibc would not start on cc-debian12.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# aws-lc-sys builds AWS-LC with the cc crate on x86_64 and aarch64 Linux: the image's gcc is
# enough, cmake is only needed for FIPS builds.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The manifest names the benchmark target, so its source must be there for cargo to read it.
COPY benches ./benches
# The registry and the target directory live in BuildKit caches, so a rebuild after a source
# change recompiles only this crate.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release \
    && cp target/release/pullthrough /usr/local/bin/pullthrough

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/pullthrough /pullthrough
USER 65532:65532
# 8443: HTTPS admission endpoint; 8080: /healthz, /readyz, /metrics.
EXPOSE 8443 8080
ENTRYPOINT ["/pullthrough"]
