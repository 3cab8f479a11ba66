# Multi-stage build: compile with the Rust toolchain, run on a slim Debian with OpenSSL 3.
FROM rust:1.95-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq cmake pkg-config libssl-dev >/dev/null
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin proxy

FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libssl3 ca-certificates >/dev/null \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 sluice
COPY --from=build /src/target/release/proxy /usr/local/bin/proxy
COPY kong.yaml.example /etc/sluice/kong.yaml
USER sluice
EXPOSE 8000 8443
# Mount your configuration over /etc/sluice/kong.yaml (a file or a ConfigMap directory mount).
ENTRYPOINT ["/usr/local/bin/proxy", "--config", "/etc/sluice/kong.yaml", "--listen", "0.0.0.0:8000"]
