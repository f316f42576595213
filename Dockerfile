# syntax=docker/dockerfile:1
# One image for the API, the worker and the migrations (docker-compose.yml picks the command):
#   node dist/api/server.js | node dist/workers/main.js | node dist/db/cli.js up | node dist/scripts/rotate-master-key.js
#
# Debian (glibc), not Alpine: the Temporal worker's native core bridge ships glibc binaries only.
ARG NODE_VERSION=20

FROM node:${NODE_VERSION}-bookworm-slim AS base
WORKDIR /app
# No telemetry or advisories from package install scripts inside an image build.
ENV NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false \
    NPM_CONFIG_AUDIT=false \
    SCARF_ANALYTICS=false

# --- all dependencies (the compiler, type definitions), for the build --------------------------
FROM base AS deps
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci

# --- compile TypeScript to dist/ (tsconfig.build.json: api, workflows, activities, workers, ----
# --- services, db, lib, and scripts/rotate-master-key.ts; .dockerignore keeps the rest out) ----
FROM deps AS build
COPY . .
RUN npm run build \
 && test -f dist/api/server.js \
 && test -f dist/workers/main.js \
 && test -f dist/db/cli.js \
 && test -f dist/workflows/index.js \
 && test -f dist/scripts/rotate-master-key.js

# --- production dependencies only --------------------------------------------------------------
FROM base AS prod-deps
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev

# --- runtime -----------------------------------------------------------------------------------
FROM node:${NODE_VERSION}-bookworm-slim AS runtime
WORKDIR /app
ENV NODE_ENV=production
# The worker fetches repositories with git (and reads them with ls-tree / cat-file); the slim
# image has neither git nor the CA certificates its https transport needs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=prod-deps /app/node_modules ./node_modules
COPY package.json ./
# dist/workflows stays in the image: the worker bundles the workflow code from
# dist/workflows/index.js at start-up (workflowsPath), with @temporalio/workflow from node_modules.
COPY --from=build /app/dist ./dist
# The code is read-only for the app user; only the data directory (AUDITFLOW_DATA_DIR, default
# .data relative to /app: mail files when SMTP_URL is unset) is writable.
RUN mkdir -p /app/.data && chown node:node /app/.data
USER node
EXPOSE 3000
CMD ["node", "dist/api/server.js"]
