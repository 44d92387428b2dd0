# Cocoon build, test and demo entry points. Targets that need root say so.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
BUILT_AT  ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
PKG       := github.com/cocoonstack/cocoon/internal/version
LDFLAGS   := -s -w -X $(PKG).Version=$(VERSION) -X $(PKG).Revision=$(REVISION) -X $(PKG).BuiltAt=$(BUILT_AT)
TEST_TIMEOUT ?= 80m

.PHONY: help all deps build cross install images test unit bench demo lint fmt clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

all: deps lint test build ## Everything: deps, lint, tests, build

deps: ## Install missing Debian packages and Go modules (root)
	bash scripts/deps.sh

build: ## Build the static binaries bin/cocoon and the guest agents bin/cocoon-agent (host arch) and bin/cocoon-agent-<arch> (found beside cocoon)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/cocoon ./cmd/cocoon
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o bin/cocoon-agent ./cmd/cocoon-agent
	for arch in amd64 arm64; do [ "$$arch" = "$$($(GO) env GOARCH)" ] || \
		CGO_ENABLED=0 GOARCH=$$arch $(GO) build -trimpath -ldflags '-s -w' -o bin/cocoon-agent-$$arch ./cmd/cocoon-agent; done

cross: ## Check that cocoon (and its tests) build for linux/arm64
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -o /dev/null ./cmd/cocoon
	GOOS=linux GOARCH=arm64 $(GO) vet ./...

install: build ## Install bin/cocoon and the guest agents bin/cocoon-agent* into /usr/local/bin
	install -m 0755 bin/cocoon bin/cocoon-agent* /usr/local/bin/

images: ## Build the guest test images, x86 and arm64 tiny included (cached in os-image/.cache)
	bash os-image/build.sh all

test: deps images build cross ## Install what is missing, build images, run the whole suite (root; e2e included)
	COCOON_BIN=$(CURDIR)/bin/cocoon $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

unit: ## Only the fast tests (no VM boots)
	$(GO) test -short -count=1 ./...

BENCH_COUNT ?= 3
BENCH ?= .

bench: deps images build ## Benchmarks: one table of medians (min/max over BENCH_COUNT runs) + bench.json
	COCOON_BIN=$(CURDIR)/bin/cocoon GO=$(GO) BENCH='$(BENCH)' BENCH_COUNT=$(BENCH_COUNT) bash scripts/bench.sh

demo: deps build ## Boot the built-in tiny image, show its console, stop and remove it (root)
	bash os-image/build.sh tiny
	bash scripts/demo.sh

lint: ## gofmt + go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "run make fmt"; exit 1; }
	$(GO) vet ./...

fmt: ## Format the code
	gofmt -w $$(git ls-files '*.go')

clean: ## Remove build output
	rm -rf bin
