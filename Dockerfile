# syntax=docker/dockerfile:1
# Parquetry's container image: a release build on Debian, run on a distroless base (glibc
# and CA certificates, no shell) as a non-root user. docs/deploy-server.md explains its use.
#
#   docker build -t parquetry .
#   docker run -p 3100:3100 -v parquetry-data:/var/lib/parquetry parquetry

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# Stripped release binary: the workspace profile keeps line tables for profiling.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CARGO_PROFILE_RELEASE_STRIP=symbols cargo build --release --locked --bin parquetry \
    && install -D -m 0755 target/release/parquetry /out/parquetry

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/parquetry /usr/local/bin/parquetry
COPY infra/docker/config.yaml /etc/parquetry/config.yaml
# distroless' nonroot user (65532); the volume holds the data on the local backend.
USER 65532:65532
WORKDIR /var/lib/parquetry
VOLUME ["/var/lib/parquetry"]
EXPOSE 3100
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/parquetry", "healthcheck", "--addr", "127.0.0.1:3100"]
ENTRYPOINT ["/usr/local/bin/parquetry"]
CMD ["-config.file=/etc/parquetry/config.yaml", "-config.expand-env=true"]
