#!/bin/sh
# Rebuilds the bundled client from c/client.c for amd64 and arm64 and records
# what it was built from; run after editing the source and commit the results
# (TestClientFresh checks).
set -eu
cd "$(dirname "$0")"
flags="-O2 -Wall -Wextra -Werror -Wl,--build-id=none -s"
gcc $flags -o kadiag-client-amd64 c/client.c
aarch64-linux-gnu-gcc $flags -o kadiag-client-arm64 c/client.c
{
	echo "source-sha256 $(sha256sum c/client.c | cut -d' ' -f1)"
	echo "compiler-amd64 $(gcc --version | head -1)"
	echo "compiler-arm64 $(aarch64-linux-gnu-gcc --version | head -1)"
} > BUILDINFO
# The bytes themselves, so an edited binary is caught whatever the compiler.
sha256sum kadiag-client-amd64 kadiag-client-arm64 > BINARIES.sha256
