# Builds Harbormaster with the committed query metadata (.sqlx/), so no database is needed.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
ENV SQLX_OFFLINE=true
RUN cargo build --release --locked --bin harbormaster

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /var/lib/harbormaster harbormaster \
 && mkdir -p /var/lib/harbormaster && chown harbormaster /var/lib/harbormaster
COPY --from=build /src/target/release/harbormaster /usr/local/bin/harbormaster
USER harbormaster
WORKDIR /var/lib/harbormaster
ENV HARBORMASTER_BIND=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK CMD ["/usr/local/bin/harbormaster", "--help"]
ENTRYPOINT ["/usr/local/bin/harbormaster"]
CMD ["serve"]
