# syntax=docker/dockerfile:1
# The nicip controller image: one static binary on distroless/static, run as a
# non-root user, with no shell and no package manager.
#
#   docker buildx build --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" -t nicip .
#
# The binary is static through musl: nothing is loaded from the image at run time
# (a static glibc build would still want NSS modules for name lookups). Every
# dependency is Rust except ring, whose C and assembly build with musl-gcc.
# Multi-arch builds (linux/amd64, linux/arm64) run this build stage on each target
# platform, so the musl target is the build machine's own.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "$(uname -m)-unknown-linux-musl"
WORKDIR /src
# The manifest and the sources only (.dockerignore lets nothing else in); benches/
# because Cargo.toml declares a bench target.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
# The dependency cache: the crate registry and target/ are BuildKit cache mounts,
# so after a source change only nicip itself is compiled again. The binary is
# copied out in the same step, because a cache mount is not part of the image.
# Without the default `sim` feature: no simulated cloud, no in-memory API server.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    target="$(uname -m)-unknown-linux-musl" \
 && cargo build --release --locked --no-default-features --target "$target" --bin nicip \
 && install -D -m 0755 "target/$target/release/nicip" /out/nicip

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="nicip" \
      org.opencontainers.image.description="Kubernetes controller that keeps secondary IPs and attachments of Zenlayer and Tencent Cloud NICs as declared in NicIpClaim objects" \
      org.opencontainers.image.source="https://github.com/nicip/nicip" \
      org.opencontainers.image.url="https://github.com/nicip/nicip" \
      org.opencontainers.image.documentation="https://github.com/nicip/nicip/blob/main/docs/install.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/nicip /usr/local/bin/nicip
ENV PATH=/usr/local/bin
# distroless's "nonroot" user, by number so that runAsNonRoot can be verified.
USER 65532:65532
ENTRYPOINT ["nicip", "controller"]
