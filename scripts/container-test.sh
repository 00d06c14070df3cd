#!/usr/bin/env bash
# The image and docker-compose.yml, run for real: builds the image (once, through Compose), brings the stack up
# beside the fake API server (test/support/fakeKubeServer.ts) reachable from the containers, verifies 50
# annotations, and checks the dry-run Job, /healthz, /readyz, the CLI in the image, a missing kubeconfig and a
# clean SIGTERM stop. Prints the time of each phase. Takes the stack down (volumes too) and stops the fake on
# the way out, also on failure.
#
#   scripts/container-test.sh                                # base images built locally (scripts/base-images.sh)
#   CONTAINER_TEST_BASES=registry scripts/container-test.sh  # where Docker Hub answers: node:22-bookworm-slim
#                                                            # and postgres:16-bookworm, digest-pinned, as users get them
#
# Needs Docker, Compose (v2 `docker compose` when present, else v1 `docker-compose`; COMPOSE="…" chooses), Node
# and npm. As root with apt-get and no Docker engine running, it installs docker.io, docker-compose and
# debootstrap and starts dockerd (left running for the next run; log in /var/log/dockerd-container-test.log).
# Linux only as written: the fake listens on the address of the docker0 bridge (FAKE_KUBE_LISTEN overrides).
set -euo pipefail
cd "$(dirname "$0")/.."

BASES=${CONTAINER_TEST_BASES:-local}
PROJECT=${CONTAINER_TEST_PROJECT:-training-controller-ct}
IMAGE=training-controller:local
DRY_RUN_LINE='Would trigger training with 50 new images (DISPATCH_MODE=dry-run, validated by the API server; nothing claimed)'

tmp=$(mktemp -d)
fake_pid=""
compose=()
phase_name=""
phase_start=$EPOCHREALTIME
started=$EPOCHREALTIME
timings=()

elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
phase() {
  [ -n "$phase_name" ] && timings+=("$(printf '  %-7s %6s s' "$phase_name" "$(elapsed "$phase_start")")")
  phase_name=$1
  phase_start=$EPOCHREALTIME
  [ -n "$phase_name" ] && printf '== %s (%s s)\n' "$phase_name" "$(elapsed "$started")"
  return 0
}
fail() {
  echo "container-test: FAILED: $*" >&2
  exit 1
}
dc() { "${compose[@]}" -p "$PROJECT" -f docker-compose.yml -f scripts/container-test.compose.yml "$@"; }
# Polls `$@` every 0.5 s for up to $1 seconds.
within() {
  local seconds=$1
  shift
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.5
  done
}
free_port() { node -e "const s = require('net').createServer().listen(0, '127.0.0.1', () => { console.log(s.address().port); s.close(); })"; }

cleanup() {
  local code=$?
  set +e
  if [ $code -ne 0 ] && [ ${#compose[@]} -gt 0 ]; then
    echo "--- the stack's last log lines" >&2
    dc logs --no-color --tail 30 >&2 2>/dev/null
    [ -s "$tmp/fake.log" ] && { echo "--- fake API server" >&2; tail -20 "$tmp/fake.log" >&2; }
  fi
  phase down
  [ ${#compose[@]} -gt 0 ] && dc down -v --remove-orphans >/dev/null 2>&1
  [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null && wait "$fake_pid" 2>/dev/null
  rm -rf "$tmp"
  phase ""
  echo "container-test: phases"
  printf '%s\n' "${timings[@]}"
  printf '  %-7s %6s s\n' total "$(elapsed "$started")"
  [ $code -eq 0 ] && echo "container-test: passed" || echo "container-test: FAILED (exit $code)" >&2
  exit $code
}
trap cleanup EXIT
trap 'exit 143' TERM # .ci/run's timeout: clean up all the same
trap 'exit 130' INT

phase setup
missing=()
command -v dockerd >/dev/null || docker info >/dev/null 2>&1 || missing+=(docker.io)
if [ -n "${COMPOSE:-}" ]; then
  read -r -a compose <<<"$COMPOSE"
elif docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null; then
  compose=(docker-compose)
else
  missing+=(docker-compose)
fi
[ "$BASES" = local ] && ! command -v debootstrap >/dev/null && missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || fail "install ${missing[*]} first"
  echo "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ ${#compose[@]} -gt 0 ] || compose=(docker-compose)
fi
if ! docker info >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || fail "no Docker engine answers: start one"
  echo "starting dockerd"
  # A dockerd killed with the session that started it leaves its and its containerd's pid files; it refuses to
  # start (or waits for that containerd) while such a pid is still a process: a zombie not yet reaped, or the
  # pid reused by another program.
  for pidfile in /var/run/docker.pid:dockerd /var/run/docker/containerd/containerd.pid:containerd; do
    pid=$(cat "${pidfile%:*}" 2>/dev/null || true)
    if [ -n "$pid" ] && { [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "${pidfile#*:}" ] || [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" = Z ]; }; then
      rm -f "${pidfile%:*}"
    fi
  done
  # As these machines run it (issue 10). Without Docker's iptables rules containers have no NAT to the outside,
  # which nothing here needs: builds use the host's network, the containers talk to each other and to the host.
  # Every inherited descriptor above stderr closed first: dockerd outlives this script, and a lock it inherited
  # (`flock /tmp/x.lock scripts/container-test.sh` passes fd 3) would be held for as long as dockerd runs.
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      [ "$fd" -gt 2 ] && eval "exec $fd>&-"
    done
    exec setsid dockerd --iptables=false --storage-driver=overlay2 >>/var/log/dockerd-container-test.log 2>&1 </dev/null
  ) &
  within 30 docker info >/dev/null 2>&1 || fail "dockerd did not start: $(tail -3 /var/log/dockerd-container-test.log)"
fi
echo "$(docker version --format 'Docker engine {{.Server.Version}}'), $("${compose[@]}" version 2>/dev/null | head -1)"
dc down -v --remove-orphans >/dev/null 2>&1 || true # what a killed earlier run left

phase bases
case $BASES in
  local)
    export NODE_BASE_IMAGE=${NODE_BASE_IMAGE:-training-controller-base/node:22-bookworm}
    export POSTGRES_BASE_IMAGE=${POSTGRES_BASE_IMAGE:-training-controller-base/postgres:15-bookworm}
    scripts/base-images.sh
    export NODE_IMAGE=$NODE_BASE_IMAGE POSTGRES_IMAGE=$POSTGRES_BASE_IMAGE
    ;;
  registry) unset NODE_IMAGE POSTGRES_IMAGE ;;
  *) fail "CONTAINER_TEST_BASES must be local or registry (got \"$BASES\")" ;;
esac

phase build
[ -d node_modules ] || npm ci --no-audit --no-fund
npx tsc -p tsconfig.json # the fake API server, from dist/test/support
dc build >"$tmp/build.log" 2>&1 || { tail -30 "$tmp/build.log" >&2; fail "the image did not build"; }
docker image inspect "$IMAGE" >/dev/null || fail "no image $IMAGE after the build"

phase up
# host-gateway, which the compose override maps host.docker.internal to, is the default bridge's address.
bridge=${FAKE_KUBE_LISTEN:-$(docker network inspect bridge --format '{{range .IPAM.Config}}{{.Gateway}}{{end}}')}
[ -n "$bridge" ] || bridge=$(ip -4 -o addr show docker0 2>/dev/null | awk '{ sub("/.*", "", $4); print $4; exit }')
[ -n "$bridge" ] || fail "no address for the docker0 bridge (set FAKE_KUBE_LISTEN)"
node dist/test/support/fakeKubeServer.js --listen "$bridge" --server https://host.docker.internal --kubeconfig "$tmp/kubeconfig" >"$tmp/fake.log" 2>&1 &
fake_pid=$!
within 10 grep -q '"event":"listening"' "$tmp/fake.log" || fail "the fake API server did not start"
export KUBECONFIG_HOST=$tmp/kubeconfig DISPATCH_MODE=dry-run TRAINING_THRESHOLD=50 TRAINING_NAMESPACE=default LOG_LEVEL=info
HTTP_HOST_PORT=$(free_port)
POSTGRES_HOST_PORT=$(free_port)
export HTTP_HOST_PORT POSTGRES_HOST_PORT
dc up -d --no-build >"$tmp/up.log" 2>&1 || { cat "$tmp/up.log" >&2; fail "compose up"; }
migrate=$(dc ps -a -q migrate) # -a: Compose v2 lists only running containers without it
[ "$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$migrate")" = "exited 0" ] || fail "migrate did not exit 0"
# `grep -q` on a pipe would end it early and fail the pipeline (pipefail): the logs go through a file.
controller_log() { dc logs --no-color controller >"$tmp/controller.log" 2>&1 && grep -q "$@" "$tmp/controller.log"; }
listening() { controller_log 'Listening for verified annotations'; }
within 60 listening || fail "the controller is not listening"
echo "migrate exited 0; the controller listens (/healthz on 127.0.0.1:$HTTP_HOST_PORT)"

phase checks
dc exec -T postgres psql -U postgres -d annotations -v ON_ERROR_STOP=1 -q \
  -c "INSERT INTO annotations (verified) SELECT true FROM generate_series(1, 50)"
echo "verified 50 annotations"
dry_run_logged() { controller_log -F "$DRY_RUN_LINE"; }
within 30 dry_run_logged || fail "no log line: $DRY_RUN_LINE"
within 5 grep -q '"event":"dry-run"' "$tmp/fake.log" || fail "the fake API server saw no dry-run create"
[ "$(grep -c '"event":"create"' "$tmp/fake.log")" = 0 ] || fail "a Job was created in dry-run mode"
runs=$(dc exec -T postgres psql -U postgres -d annotations -tAc \
  "SELECT count(*) FROM training_runs UNION ALL SELECT count(*) FROM annotations WHERE training_run_id IS NOT NULL OR used_for_training" | tr '\n' ' ')
[ "$runs" = "0 0 " ] || fail "dry-run claimed something: training_runs, claimed annotations = $runs"
echo "the controller logged: $DRY_RUN_LINE"
http_status() { curl -s -o "$tmp/body" -w '%{http_code}' "http://127.0.0.1:$HTTP_HOST_PORT$1" || true; }
[ "$(http_status /healthz)" = 200 ] || fail "/healthz answered $(http_status /healthz)"
ready() { [ "$(http_status /readyz)" = 200 ]; }
within 30 ready || fail "/readyz: $(http_status /readyz) $(cat "$tmp/body")"
echo "/healthz 200, /readyz 200"
# The README's operator command shape (kubectl exec … -- training-controller status), in the running container.
dc exec -T controller training-controller status >"$tmp/status" 2>&1 || fail "training-controller status in the container: $(cat "$tmp/status")"
grep -q '^pending annotations:' "$tmp/status" || fail "training-controller status printed: $(head -3 "$tmp/status")"
echo "training-controller is on the image's PATH: $(grep '^pending annotations:' "$tmp/status")"
# docker-compose.yml's healthcheck (node -e fetch /readyz), as Docker runs it in the container.
health() { [ "$(docker inspect -f '{{.State.Health.Status}}' "$(dc ps -q controller)")" = healthy ]; }
within 40 health || fail "the controller is not healthy: $(docker inspect -f '{{json .State.Health}}' "$(dc ps -q controller)")"
echo "compose healthcheck: healthy"
[ "$(docker image inspect -f '{{.Config.User}}' "$IMAGE")" = node ] || fail "the image does not run as node"
docker run --rm "$IMAGE" render-job >"$tmp/job.yaml" && grep -q '^kind: Job$' "$tmp/job.yaml" || fail "render-job in the image"
code=0
docker run --rm "$IMAGE" dance 2>"$tmp/usage" || code=$?
[ $code = 2 ] && grep -q '^usage: training-controller' "$tmp/usage" || fail "an unknown command: exit $code, $(head -1 "$tmp/usage")"
echo "the image: user node, render-job and the usage without DATABASE_URL"
mkdir "$tmp/dir-kubeconfig"
code=0
docker run --rm -v "$tmp/dir-kubeconfig:/kube/config:ro" -e KUBECONFIG=/kube/config "$IMAGE" render-job 2>"$tmp/eisdir" || code=$?
[ $code = 2 ] && grep -q 'KUBECONFIG /kube/config is a directory' "$tmp/eisdir" || fail "a directory as kubeconfig: exit $code, $(cat "$tmp/eisdir")"
code=0
KUBECONFIG_HOST=$tmp/absent/config dc run --rm --no-deps controller >"$tmp/absent.log" 2>&1 || code=$?
[ $code != 0 ] && grep -q "$tmp/absent/config" "$tmp/absent.log" || fail "a missing kubeconfig: exit $code, $(tail -2 "$tmp/absent.log")"
[ ! -e "$tmp/absent" ] || fail "a missing kubeconfig: Docker created $tmp/absent"
echo "a missing kubeconfig stops compose naming it, and creates nothing: $(grep -o 'bind source path does not exist.*' "$tmp/absent.log" | head -1)"

phase stop
controller=$(dc ps -q controller)
stop_started=$EPOCHREALTIME
dc stop -t 15 controller >/dev/null 2>&1
took=$(elapsed "$stop_started")
[ "$(docker inspect -f '{{.State.ExitCode}}' "$controller")" = 0 ] || fail "the controller exited $(docker inspect -f '{{.State.ExitCode}}' "$controller") on SIGTERM"
controller_log '"signal":"SIGTERM".*"msg":"Shutting down"' || fail "no 'Shutting down' on SIGTERM"
controller_log '"msg":"Stopped"' || fail "no 'Stopped' after SIGTERM"
awk -v t="$took" 'BEGIN { exit !(t < 15) }' || fail "the stop took $took s (the grace period is 15 s)"
echo "SIGTERM: exit 0 in $took s"
