# keyturn container image: the stripped release binary and the CA
# certificates on a slim Debian base, run as a non-root user (uid 10001).
#
#   docker build -t keyturn:0.1.0 .
#   docker run --rm keyturn:0.1.0 --version
#
# Shipped as an untested convenience: CI has no Docker, so this file is never
# built there. The binary it builds is the one CI tests (`cargo install
# --locked --path crates/cli` and the Debian package, scripts/package/check.sh).
# docs/SCHEDULING.md and docs/OPERATIONS.md run it as a Kubernetes
# CronJob and Job.

ARG RUST_VERSION=1.94

# --- build: the release profile strips the binary (Cargo.toml) ---
FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p keyturn \
 && install -m 0755 target/release/keyturn /usr/local/bin/keyturn

# --- runtime: the binary and the CA certificates, nothing else added ---
FROM debian:bookworm-slim
# The build stage's CA bundle (the rust image carries Debian's
# ca-certificates): keyturn's TLS (databases, AWS KMS, Vault/OpenBao)
# verifies servers against the system's roots.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /usr/local/bin/keyturn /usr/local/bin/keyturn
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
RUN groupadd --gid 10001 keyturn \
 && useradd --uid 10001 --gid 10001 --home-dir /home/keyturn --create-home \
      --shell /usr/sbin/nologin keyturn
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
WORKDIR /home/keyturn
ENTRYPOINT ["keyturn"]
CMD ["--help"]
