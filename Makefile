# kadiag: the two commands a new machine needs are `make demo` and `make test`.
GO        ?= go
BIN       := bin/kadiag
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
# Test time budget: CI allows 90 minutes, we keep the suite well under 15.
TESTFLAGS ?= -race -timeout 14m

.PHONY: all build demo demo-sockets test deps vet fmt-check bench clean man

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

## test: the whole suite, as CI runs it
test: deps vet fmt-check
	$(GO) test $(TESTFLAGS) ./...

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
## aarch64 glibc) reproducibly; preload/preload_test.go fails when they are stale.
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
