# Stoa container image.
#
#   docker build -t stoa .
#   docker run -p 8080:8080 -v stoa-data:/var/lib/stoa/data --stop-timeout 60 stoa
#
# Two stages: the Rust toolchain compiles a stripped release binary; the runtime is
# distroless (glibc, CA certificates, time zone data, no shell, no package manager) and runs
# as the non-root user 65532. See docs/DEPLOY.md.

# ---------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src

# Dependencies first: this layer depends only on the manifests and the lock file, so
# changing Stoa's own code does not recompile the dependency tree. Every workspace member
# (., protocol, actors, loadtest) needs its manifest and a placeholder target for cargo
# to load the workspace. The placeholder builds of the workspace's own crates are then
# forgotten, whatever the files' timestamps, so the next step compiles the real sources.
COPY Cargo.toml Cargo.lock ./
COPY protocol/Cargo.toml protocol/Cargo.toml
COPY actors/Cargo.toml actors/Cargo.toml
COPY loadtest/Cargo.toml loadtest/Cargo.toml
RUN mkdir -p src protocol/src actors/src loadtest/src \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > loadtest/src/main.rs \
    && touch src/lib.rs protocol/src/lib.rs actors/src/lib.rs \
    && cargo build --release --locked --bin stoa \
    && rm -rf src protocol/src actors/src loadtest/src \
        target/release/stoa target/release/stoa.d \
        target/release/libstoa* \
        target/release/.fingerprint/stoa-* \
        target/release/build/stoa-* \
        target/release/deps/stoa* \
        target/release/deps/libstoa*

# The sources: build script, compiled-in default configuration, embedded migrations, the
# console's committed bundle (embedded too: no Node in the image), crates.
COPY build.rs ./
COPY config config
COPY migrations migrations
COPY web/dist web/dist
COPY protocol/src protocol/src
COPY actors/src actors/src
COPY loadtest/src loadtest/src
COPY src src
RUN cargo build --release --locked --bin stoa \
    && strip --strip-all target/release/stoa \
    && install -D -m 0755 target/release/stoa /out/stoa \
    && mkdir -p /out/data \
    && /out/stoa --help

# ---------------------------------------------------------------------------------------
# Runtime
# ---------------------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=build /out/stoa /usr/local/bin/stoa
# The image has no shell to create directories at start-up: the data directory comes from
# the build stage, owned by the non-root user. A named volume mounted here starts as a copy
# of it (owner included); a bind-mounted host directory must be writable by uid 65532.
COPY --from=build --chown=65532:65532 /out/data /var/lib/stoa/data

WORKDIR /var/lib/stoa
USER 65532:65532

# Listen on every interface (the default, 127.0.0.1, is unreachable from outside the
# container); one JSON object per log line; the SQLite database, and the JWT secret
# generated in development, in the data volume. Any STOA_<SECTION>__<KEY> variable given
# to `docker run -e` overrides these. For a configuration file, mount it and set
# STOA_CONFIG=/path/to/stoa.toml (rather than passing --config): every command then reads
# it, the health check and `docker exec … stoa backup` included.
ENV STOA_SERVER__HOST=0.0.0.0 \
    STOA_SERVER__PORT=8080 \
    STOA_LOG__FORMAT=json \
    STOA_DATA_DIR=/var/lib/stoa/data \
    STOA_DATABASE__URL=sqlite:///var/lib/stoa/data/stoa.db

EXPOSE 8080
VOLUME ["/var/lib/stoa/data"]

# `stoa healthcheck` asks this node's /readyz (the database answers) and exits 0 on 200:
# no curl needed. The start period covers migrations on a large database.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/stoa", "healthcheck"]

# SIGTERM drains: new sockets are refused and open ones are closed with 1001 over
# server.drain_secs. Give the container longer than that to stop (docker run
# --stop-timeout, compose stop_grace_period); Docker's default is 10 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/stoa"]
