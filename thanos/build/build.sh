#!/usr/bin/env bash
# Build bin/thanos from the Go module pinned in thanos/build/go.mod, as the
# Thanos release build does (CGO off, tags netgo,slicelabels), with progress.
# Called by `make thanos`; rebuilds only when go.mod/go.sum change (a stamp
# next to the binary records their hash).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: build.sh OUTPUT}"
need="$(sed -n 's/^go //p' "$here/go.mod")"
if ! command -v go >/dev/null; then
  echo "thanos: Go >= $need is needed to build Thanos (Debian: install Go $need or later from go.dev/dl, or set PATH to it)" >&2
  exit 1
fi
have="$(go env GOVERSION | sed 's/^go//')"
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
  echo "thanos: Go $have is too old; the pinned Thanos needs Go >= $need (install it, or put it first on PATH)" >&2
  exit 1
fi
version="$(sed -n 's#^[[:space:]]*github.com/thanos-io/thanos v\([0-9.]*\).*#\1#p' "$here/go.mod")"
cd "$here"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
start=$(date +%s)
echo "thanos: building v$version from its Go module (first time: about 7 minutes on 2 cores) ..."
go mod download
total=$(go list -deps github.com/thanos-io/thanos/cmd/thanos | wc -l)
go build -v -trimpath -tags netgo,slicelabels \
  -ldflags "-X github.com/prometheus/common/version.Version=$version -X github.com/prometheus/common/version.Branch=homewatt" \
  -o "$out.tmp" github.com/thanos-io/thanos/cmd/thanos 2>&1 |
  awk -v total="$total" -v start="$start" '
    { n++; if (n % 50 == 0) { el = systime() - start; rate = n / (el > 0 ? el : 1);
        printf "thanos: [%d/%d packages] %d s, %.1f pkg/s, ETA %d s\n", n, total, el, rate, (total - n) / rate; fflush() } }
    /^(#|.*\.go:[0-9]+)/ { print; fflush() }'
mv "$out.tmp" "$out"
echo "thanos: built $out (v$version) in $(( $(date +%s) - start )) s"
