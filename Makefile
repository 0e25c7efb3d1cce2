# askgate — developer and CI entry points. `make help` lists the targets.

# Use the go on PATH; fall back to the toolchain in /usr/local/go. PATH is
# exported so that tools started by go (gqlgen, staticcheck) find it too.
export PATH := $(PATH):/usr/local/go/bin
GO    ?= go
GOFMT ?= gofmt

# staticcheck 2026.2.2; its module versions are v0.8.x (see `go list -m -versions honnef.co/go/tools`).
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK         := $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

BIN  := bin/askgate
ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help run build test services generate check-generate lint fmt-check vet staticcheck bench migrate token clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  %-15s %s\n", $$1, $$2 }'

run: ## start the gateway on the embedded defaults (development mode); extra flags in ARGS
	$(GO) run ./cmd/askgate serve $(ARGS)

.PHONY: cluster
cluster: ## three instances sharing PostgreSQL and Redis behind a round-robin proxy on :8080 (Ctrl-C stops them)
	GO="$(GO)" bash scripts/cluster.sh

build: ## build bin/askgate
	$(GO) build -o $(BIN) ./cmd/askgate

test: services ## the whole suite: services, go test -race, audit, reference clients, check-generate, lint
	$(GO) test -race -count=1 ./...
	$(MAKE) --no-print-directory audit
	$(MAKE) --no-print-directory clients
	$(MAKE) --no-print-directory check-generate
	$(MAKE) --no-print-directory lint

.PHONY: audit
audit: ## GraphQL over HTTP conformance: graphql-http's server audits against a running askgate (no MUST may fail)
	GO="$(GO)" bash scripts/audit.sh

.PHONY: clients
clients: ## subscriptions (graphql-transport-ws, legacy graphql-ws, SSE) checked with the reference clients against a running askgate
	GO="$(GO)" bash scripts/clients.sh

services: ## make sure PostgreSQL and Redis are up on 127.0.0.1
	bash scripts/services.sh

generate: ## regenerate graph/ (and resolver stubs) from schema/ with the pinned gqlgen
	$(GO) run github.com/99designs/gqlgen generate
	$(GO) run ./internal/gqlexec/rewrite graph/*.go

check-generate: ## regenerate and fail if graph/ or resolvers/ change
	GO="$(GO)" bash scripts/check-generate.sh

lint: fmt-check vet staticcheck ## gofmt (outside graph/), go vet, staticcheck

fmt-check:
	@out=$$(find . -type f -name '*.go' -not -path './graph/*' -not -path './.git/*' \
		-not -path '*/node_modules/*' -print0 | xargs -0 -r $(GOFMT) -l); \
	if [ -n "$$out" ]; then echo "gofmt: these files need formatting (run gofmt -w):"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck:
	$(STATICCHECK) ./...

bench: ## run the benchmarks
	$(GO) test -run '^$$' -bench . -benchmem ./...

migrate: ## apply the store's schema migrations
	$(GO) run ./cmd/askgate migrate $(ARGS)

token: ## mint a development access token for dev-user
	@$(GO) run ./cmd/askgate token --sub dev-user --scope "read:chat write:chat" $(ARGS)

clean: ## remove build output and cached test results
	rm -rf bin/
	$(GO) clean -testcache
