# syntax=docker/dockerfile:1
# A static nicip binary on a distroless, non-root base: no shell, no package manager.
FROM rust:1.89-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl \
 && apt-get update && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin nicip \
 && cp target/x86_64-unknown-linux-musl/release/nicip /nicip

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /nicip /usr/local/bin/nicip
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/nicip"]
