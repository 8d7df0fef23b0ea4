#!/bin/sh
# Rebuilds the bundled client from c/client.c and records what it was built
# from; run after editing the source and commit the results (TestClientFresh
# checks).
set -eu
cd "$(dirname "$0")"
gcc -O2 -Wall -Wextra -Werror -Wl,--build-id=none -s -o kadiag-client c/client.c
{
	echo "source-sha256 $(sha256sum c/client.c | cut -d' ' -f1)"
	echo "compiler $(gcc --version | head -1)"
} > BUILDINFO
