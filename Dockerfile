# Multi-stage build: compile with the Rust toolchain, ship a slim Debian image with the binary.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin stoa

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/stoa --create-home stoa
COPY --from=build /src/target/release/stoa /usr/local/bin/stoa
USER stoa
WORKDIR /var/lib/stoa
ENV STOA_SERVER__HOST=0.0.0.0 \
    STOA_LOG__FORMAT=json
EXPOSE 8080
VOLUME ["/var/lib/stoa/data"]
ENTRYPOINT ["/usr/local/bin/stoa"]
