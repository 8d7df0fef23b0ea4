# kadiag: the two commands a new machine needs are `make demo` and `make test`.
GO        ?= go
BIN       := bin/kadiag
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
# Test time budget: CI allows 90 minutes, we keep the suite well under 15.
TESTFLAGS ?= -race -timeout 14m

.PHONY: all build demo test deps vet fmt-check bench clean

all: build

## build: a static binary at bin/kadiag, copyable into any container
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/kadiag

## deps: Debian packages the tests need (when root; idempotent, quiet)
deps:
	@./scripts/install-deps.sh

## demo: build, then run the main job
demo: build
	@./scripts/demo.sh

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## test: the whole suite, as CI runs it
test: deps vet fmt-check
	$(GO) test $(TESTFLAGS) ./...

## bench: benchmarks, each printing a ratio against its peer measured in the same run
bench: deps build
	@./scripts/bench.sh

clean:
	rm -rf bin
