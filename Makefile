# kadiag: the two commands a new machine needs are `make demo` and `make test`.
GO        ?= go
BIN       := bin/kadiag
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
# Test time budget: CI allows 90 minutes, we keep the suite well under 15.
TESTFLAGS ?= -race -timeout 14m

.PHONY: all build demo demo-sockets test deps vet fmt-check staticcheck cover fuzz fuzz-short bench clean man

# Quality gates (make test): staticcheck pinned and installed into bin/tools,
# a coverage floor over the whole module, a short fuzz pass of every target.
TOOLS               := $(CURDIR)/bin/tools
STATICCHECK_VERSION := v0.7.0
# Total statement coverage of `go test ./...` (root, CI=true) must not fall
# below this percentage; scripts/coverage.sh prints the per-package figures.
COVER_FLOOR         ?= 80
COVER_PROFILE       := bin/cover.out
# The kadiag binary that cmd/kadiag's tests run is built with -cover; its
# counters, as a profile, are merged into the report.
COVER_BINPROFILE    := bin/cover-binary.out
# make fuzz: each fuzz target for FUZZTIME; make test runs FUZZTIME_SHORT each.
FUZZTIME            ?= 60s
FUZZTIME_SHORT      ?= 3s

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

## demo-sockets: two connections, one with keepalive and one without, seen by kadiag sockets
demo-sockets: build
	@./scripts/demo-sockets.sh

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

$(TOOLS)/staticcheck:
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## staticcheck: the linter, pinned to a release that knows Go 1.26
staticcheck: $(TOOLS)/staticcheck
	$(TOOLS)/staticcheck ./...

## test: the whole suite, as CI runs it: vet, gofmt, staticcheck, go test
## -race with coverage (floor COVER_FLOOR %), then a short fuzz pass. The C
## library's strict (-Wall -Wextra -Werror) and ASan/UBSan builds run inside
## the preload package's tests.
test: deps vet fmt-check staticcheck
	@mkdir -p bin && rm -f $(COVER_BINPROFILE)
	@# The binary's counters go to a directory every test user (nobody too) can write.
	d=$$(mktemp -d /tmp/kadiag-covdata-XXXXXX) && chmod 0777 $$d && trap "rm -rf $$d" EXIT && \
	KADIAG_GOCOVERDIR=$$d $(GO) test $(TESTFLAGS) -coverprofile=$(COVER_PROFILE) ./... && \
	{ [ -z "$$(ls -A $$d)" ] || $(GO) tool covdata textfmt -i=$$d -o $(COVER_BINPROFILE); }
	@./scripts/coverage.sh $(COVER_FLOOR) $(COVER_PROFILE) $(COVER_BINPROFILE)
	@./scripts/fuzz.sh $(FUZZTIME_SHORT)

## cover: coverage report of the last make test (per package and total)
cover:
	@./scripts/coverage.sh $(COVER_FLOOR) $(COVER_PROFILE) $(COVER_BINPROFILE)

## fuzz: every fuzz target for FUZZTIME (default 60s each)
fuzz:
	@./scripts/fuzz.sh $(FUZZTIME)

## fuzz-short: the pass make test runs (FUZZTIME_SHORT each)
fuzz-short:
	@./scripts/fuzz.sh $(FUZZTIME_SHORT)

## bench: benchmarks, each printing a ratio against its peer measured in the same run
bench: deps build
	@./scripts/bench.sh

clean:
	rm -rf bin

## man: man pages generated from the commands' help, into bin/man/man1
##      (read one with: man -l bin/man/man1/kadiag-doctor.1)
man: build
	@$(BIN) man --dir bin/man/man1
	@echo "man pages in bin/man/man1 (MANPATH=$(CURDIR)/bin/man man kadiag)"

## preload: rebuild the committed LD_PRELOAD libraries (x86_64 glibc and musl,
## aarch64 glibc) reproducibly and records their hashes in lib/BINARIES.sha256;
## preload/stale_test.go fails when they are stale or edited.
## Flags: no build-id, stripped, source paths mapped away, so the bytes depend
## only on the source and the compiler versions recorded in lib/TOOLCHAIN.
PRELOAD_OUT     ?= preload/lib
PRELOAD_SRC     := preload/src/keepalive.c
PRELOAD_CFLAGS  := -std=gnu11 -Wall -Wextra -Werror -O2 -fPIC -fvisibility=hidden \
	-fno-stack-protector -ffile-prefix-map=$(CURDIR)/=
PRELOAD_LDFLAGS := -shared -s -Wl,--build-id=none -Wl,-z,noexecstack -Wl,--hash-style=both
# glibc < 2.34 keeps dlsym in libdl.so.2: name it so the library loads there too.
PRELOAD_GLIBC   := -Wl,--no-as-needed -l:libdl.so.2
.PHONY: preload
preload:
	@mkdir -p $(PRELOAD_OUT)/amd64-glibc $(PRELOAD_OUT)/amd64-musl $(PRELOAD_OUT)/arm64-glibc
	gcc $(PRELOAD_CFLAGS) $(PRELOAD_LDFLAGS) -o $(PRELOAD_OUT)/amd64-glibc/libkadiag_keepalive.so \
		$(PRELOAD_SRC) $(PRELOAD_GLIBC)
	musl-gcc $(PRELOAD_CFLAGS) $(PRELOAD_LDFLAGS) -o $(PRELOAD_OUT)/amd64-musl/libkadiag_keepalive.so \
		$(PRELOAD_SRC)
	aarch64-linux-gnu-gcc $(PRELOAD_CFLAGS) $(PRELOAD_LDFLAGS) \
		-o $(PRELOAD_OUT)/arm64-glibc/libkadiag_keepalive.so $(PRELOAD_SRC) $(PRELOAD_GLIBC)
	@sha256sum $(PRELOAD_SRC) | sed 's| .*/| |' > $(PRELOAD_OUT)/SOURCES.sha256
	@{ gcc --version | head -1; musl-gcc --version | head -1; aarch64-linux-gnu-gcc --version | head -1; } \
		> $(PRELOAD_OUT)/TOOLCHAIN
	@# The bytes themselves, so an edited ELF is caught whatever the compiler.
	@cd $(PRELOAD_OUT) && sha256sum */libkadiag_keepalive.so > BINARIES.sha256
