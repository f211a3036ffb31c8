# Everyday tasks. `make help` lists them.
.PHONY: help setup build test unit security doctor image bench up down logs clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

setup: ## install what is missing (Docker engine, gVisor, npm deps) and build
	./scripts/setup.sh

build: ## compile TypeScript and bundle the sandbox runner
	npm run build

test: setup ## the whole suite: unit, integration, e2e, red team (real containers)
	npm test

unit: ## unit tests only (no Docker)
	npx vitest run test/unit

security: security-check
security-check: build ## the red-team suite under runc and runsc, and the seccomp tests
	npx vitest run test/security test/integration/seccomp.test.ts

doctor: build ## check engine, runtime, image, seccomp profile, data dir, upstreams
	node dist/cli.js doctor

image: build ## build the sandbox image (offline when no registry is reachable)
	node dist/cli.js image build

bench: build ## latency and throughput benchmark (writes docs/PERFORMANCE.md)
	npm run bench

up: ## start the HTTP service (docker-compose.yml; needs CODEBOX_API_KEYS)
	docker compose up -d --build

down: ## stop the HTTP service (graceful: runs finish within the grace period)
	docker compose down

logs: ## follow the HTTP service's logs
	docker compose logs -f codebox

clean: ## remove build output and test results
	rm -rf dist test-results *.tgz
