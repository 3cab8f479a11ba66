# Multi-stage build: compile with the Rust toolchain, run on a slim Debian with OpenSSL 3.
# The binary is scripts/build-dist's (fat LTO and profile-guided optimisation): the build stage
# runs the bench's quick scenarios on loopback to train it, so it installs their tools (bench/run
# adds nginx, wrk, redis-server) and needs two cores.
FROM rust:1.95-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq cmake pkg-config libssl-dev openssl python3 >/dev/null
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY vendor ./vendor
COPY scripts ./scripts
COPY bench ./bench
RUN scripts/build-dist

FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libssl3 ca-certificates >/dev/null \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 sluice
COPY --from=build /src/target/dist/proxy /usr/local/bin/proxy
COPY kong.yaml.example /usr/share/sluice/kong.yaml.example
USER sluice
EXPOSE 8000 8443
# The configuration is /etc/sluice/kong.yaml: mount a file or a ConfigMap directory there. With
# nothing mounted the gateway starts with no configuration and waits for POST /config, as a
# DB-less Kong does (how the Kong Ingress Controller runs it). Settings come from flags,
# PROXY_* variables or Kong's KONG_* ones (README: Running under the Kong Ingress Controller).
WORKDIR /etc/sluice
ENTRYPOINT ["/usr/local/bin/proxy"]
