# spikewatch: release binary with librdkafka compiled in (rdkafka crate), TLS via the system OpenSSL.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential zlib1g-dev libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --features ssl --bin spikewatch

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 spikewatch
COPY --from=build /src/target/release/spikewatch /usr/local/bin/spikewatch
USER spikewatch
# The status page, API, /metrics, /healthz and /readyz when [http] addr (or --http-addr) is set;
# deploy/spikewatch.toml and the Kubernetes ConfigMap use 0.0.0.0:8080. No curl in this image:
# probes run `spikewatch healthcheck` (or use an HTTP probe, as the Kubernetes manifests do).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/spikewatch"]
CMD ["run", "--config", "/etc/spikewatch/spikewatch.toml"]
