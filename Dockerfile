# syntax=docker/dockerfile:1
#
# The redshift-flight container image: a release build on the official Rust image (Debian
# bookworm), run on distroless `cc` (glibc, libgcc, CA certificates and tzdata; no shell, no
# package manager) as the non-root user 65532.
#
#   docker build -t redshift-flight .
#   docker run --rm -p 8815:8815 -p 9090:9090 --env-file redshift-flight.env redshift-flight
#
# Configuration: `REDSHIFT_FLIGHT_<KEY>` variables, or a JSON file mounted read-only and named by
# `REDSHIFT_FLIGHT_CONFIG=/etc/redshift-flight/configuration.json` (README, "Deploying"). The
# image listens on 0.0.0.0, so the server refuses to start until `auth_tokens` or `auth_file`
# is set. Checked offline by tests/deploy/check (hadolint and the build context).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src

# Dependencies first, against empty targets: this layer is built again only when Cargo.toml or
# Cargo.lock change, not on every edit of the source. The emulator is a workspace member, so its
# manifest (and empty targets) must be there for the lock file to resolve; it is not built.
COPY Cargo.toml Cargo.lock ./
COPY tests/redshift-emulator/Cargo.toml tests/redshift-emulator/
RUN mkdir -p src tests/redshift-emulator/src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs tests/redshift-emulator/src/lib.rs \
    && cp src/main.rs tests/redshift-emulator/src/main.rs \
    && cargo build --release --locked --bin redshift-flight

# The server itself. COPY keeps the files' own modification times, which may be older than the
# placeholder build above: touch the crate roots so cargo rebuilds the crate, not the stub.
# The release profile keeps line tables (panic backtraces name file and line); compressed, they
# take the binary from about 260 MB to 96 MB (stripped it would be 45 MB, without line numbers).
COPY src src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin redshift-flight \
    && mkdir -p /out \
    && objcopy --compress-debug-sections=zlib target/release/redshift-flight /out/redshift-flight \
    && test -n "$(/out/redshift-flight --version)"

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/redshift-flight /usr/local/bin/redshift-flight

# Listen on every interface in a container; Prometheus text on /metrics at :9090.
ENV REDSHIFT_FLIGHT_LISTEN_ADDRESS=0.0.0.0:8815 \
    REDSHIFT_FLIGHT_METRICS_ADDRESS=0.0.0.0:9090

# Numeric, so Kubernetes' runAsNonRoot can verify it (a user name cannot be checked).
USER 65532:65532
EXPOSE 8815 9090

# No HEALTHCHECK: Docker's runs a program inside the image, and this one has no shell and no gRPC
# client (a TCP connect would prove less than a health check claims). The server answers the
# standard gRPC health service (grpc.health.v1.Health) on the Flight port, and orchestrators call
# it themselves: Kubernetes `grpc` probes (deploy/kubernetes/deployment.yaml), an ALB target group
# with protocol version gRPC (path /grpc.health.v1.Health/Check, success code 0) on ECS, or
# grpc_health_probe / grpcurl from outside. Kubernetes ignores HEALTHCHECK in any case.

# SIGTERM (docker stop, Kubernetes) stops new calls and lets streams finish for
# shutdown_grace_seconds (default 30): give `docker stop` a longer `--time`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["redshift-flight"]
CMD ["serve"]
