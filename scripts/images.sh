#!/usr/bin/env bash
# Builds every image the container path needs without any registry, from
# this host's Go toolchain, Debian's redis-server and busybox-static, and the
# module proxy's toxiproxy. Idempotent: an image that exists is kept, unless
# it was built from sources that changed since (pixelflow's images carry the
# hash of their sources as a label).
#
# Local images have names of their own, never a Docker Hub tag: a user with
# a registry keeps pulling redis:7.2, and nothing here shadows it.
#
# Usage: scripts/images.sh          build what is missing or stale
#        scripts/images.sh --list   print the image names, one a line
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=pixelflow-base:local         # runtime base: passwd, certs, /tmp (a distroless/static stand-in)
BUILDER=pixelflow-go:local        # builder: this host's Go (go.mod's exact release)
RELEASE=pixelflow:local           # the release build (Dockerfile), as compose.yaml names it
FAILPOINTS=pixelflow:failpoints   # the drills' build (-tags failpoints)
REDIS=pixelflow-redis:local       # Debian's redis-server, protected mode off
TOXIPROXY=pixelflow-toxiproxy:local

if [ "${1:-}" = --list ]; then
  printf '%s\n' "$BASE" "$BUILDER" "$RELEASE" "$FAILPOINTS" "$REDIS" "$TOXIPROXY"
  exit 0
fi

command -v docker >/dev/null || { echo "make images: docker is not installed (Docker Engine is needed to build images)" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "make images: the Docker daemon does not answer (docker info fails): start it, or use the local provider (E2E_PROVIDER=local)" >&2; exit 1; }
scripts/ensure-installed.sh redis-server redis-server
# The images' shell and tools: busybox-static (a static binary, since the
# images hold no C library of their own).
if ! dpkg -s busybox-static >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "make images: installing busybox-static with apt-get" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
  else
    echo "make images: busybox-static is required. Install it with: sudo apt-get install -y busybox-static" >&2; exit 1
  fi
fi

have() { docker image inspect "$1" >/dev/null 2>&1; }
label() { docker image inspect -f "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# rootfs DIR: a minimal root filesystem with busybox (sh, cat, awk, grep,
# nc: what testcontainers' port check and Docker's RUN need), CA
# certificates, /tmp and the nonroot user distroless has (65532).
rootfs() {
  local r=$1
  mkdir -p "$r"/{bin,etc/ssl/certs,tmp,home/nonroot,data}
  chmod 1777 "$r/tmp"
  cp /bin/busybox "$r/bin/busybox"
  for a in $("$r/bin/busybox" --list); do [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"; done
  cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/"
  printf 'root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/home/nonroot:/bin/sh\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$r/etc/group"
  chown 65532:65532 "$r/home/nonroot" "$r/data"
}

# withlibs ROOT BIN...: copies each binary and the shared libraries ldd
# names into ROOT at the same paths.
withlibs() {
  local r=$1 b lib
  shift
  for b in "$@"; do
    mkdir -p "$r$(dirname "$b")"
    cp -L "$b" "$r$b"
    for lib in $(ldd "$b" | grep -oE '/[^ ]+'); do
      mkdir -p "$r$(dirname "$lib")"
      [ -e "$r$lib" ] || cp -L "$lib" "$r$lib"
    done
  done
}

if ! have "$BASE"; then
  echo "make images: $BASE (runtime base)"
  rootfs "$tmp/base"
  tar -C "$tmp/base" -c . | docker import -c 'ENV PATH=/bin' -c 'LABEL org.pixelflow.image=base' - "$BASE" >/dev/null
fi

gover=$(sed -n 's/^go //p' go.mod)
if [ "$(label "$BUILDER" org.pixelflow.go)" != "$gover" ]; then
  have=$(go env GOVERSION)
  [ "$have" = "go$gover" ] || { echo "make images: go.mod says go $gover but this host has $have: the builder image is this host's Go" >&2; exit 1; }
  echo "make images: $BUILDER (go $gover from $(go env GOROOT))"
  rootfs "$tmp/go"
  mkdir -p "$tmp/go/usr/local"
  cp -a "$(go env GOROOT)" "$tmp/go/usr/local/go"
  tar -C "$tmp/go" -c . | docker import \
    -c 'ENV PATH=/usr/local/go/bin:/bin' -c 'ENV GOTOOLCHAIN=local' -c 'ENV HOME=/root' -c 'ENV GOPATH=/go' \
    -c "LABEL org.pixelflow.image=builder org.pixelflow.go=$gover" - "$BUILDER" >/dev/null
fi

# pixelflow's images are built by the Dockerfile itself, from a context of
# the tracked and new files plus vendor/ (GOPROXY=off: nothing is fetched).
src=$( { git ls-files -co --exclude-standard -z | xargs -0 sha256sum 2>/dev/null; } | sha256sum | cut -c1-16)
build_pixelflow() {
  local img=$1 tags=$2
  if [ "$(label "$img" org.pixelflow.source)" = "$src" ]; then return; fi
  echo "make images: $img (Dockerfile, tags '${tags}', sources $src)"
  if [ ! -d "$tmp/ctx" ]; then
    mkdir -p "$tmp/ctx"
    git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$tmp/ctx" 2>/dev/null || true
    (cd "$tmp/ctx" && go mod vendor)
  fi
  docker build -q -t "$img" --label org.pixelflow.source="$src" \
    --build-arg GO_IMAGE="$BUILDER" --build-arg RUNTIME_IMAGE="$BASE" \
    --build-arg GOPROXY=off --build-arg GOFLAGS=-mod=vendor --build-arg TAGS="$tags" "$tmp/ctx" >/dev/null
}
build_pixelflow "$RELEASE" ""
build_pixelflow "$FAILPOINTS" failpoints

redisver=$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')
if [ "$(label "$REDIS" org.pixelflow.redis)" != "$redisver" ]; then
  echo "make images: $REDIS (Debian's redis-server $redisver)"
  rootfs "$tmp/redis"
  withlibs "$tmp/redis" "$(command -v redis-server)" "$(command -v redis-cli)"
  # As the official image does: without a config file Redis starts in
  # protected mode and refuses every client that is not on loopback, which
  # a published port never is.
  cat >"$tmp/redis/bin/redis-entrypoint" <<'SH'
#!/bin/sh
if [ "${1#-}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = redis-server ]; then shift; set -- redis-server --protected-mode no "$@"; fi
exec "$@"
SH
  chmod +x "$tmp/redis/bin/redis-entrypoint"
  tar -C "$tmp/redis" -c . | docker import \
    -c 'ENV PATH=/usr/bin:/bin' -c 'WORKDIR /data' -c 'EXPOSE 6379' \
    -c 'ENTRYPOINT ["/bin/redis-entrypoint"]' -c 'CMD ["redis-server"]' \
    -c "LABEL org.pixelflow.image=redis org.pixelflow.redis=$redisver" - "$REDIS" >/dev/null
fi

toxiver=$(go list -m -f '{{.Version}}' github.com/Shopify/toxiproxy/v2)
if [ "$(label "$TOXIPROXY" org.pixelflow.toxiproxy)" != "$toxiver" ]; then
  echo "make images: $TOXIPROXY (toxiproxy $toxiver from the module proxy)"
  rootfs "$tmp/toxi"
  CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$tmp/toxi/toxiproxy" github.com/Shopify/toxiproxy/v2/cmd/server
  tar -C "$tmp/toxi" -c . | docker import \
    -c 'ENV PATH=/bin' -c 'EXPOSE 8474' -c 'ENTRYPOINT ["/toxiproxy"]' -c 'CMD ["-host=0.0.0.0"]' \
    -c "LABEL org.pixelflow.image=toxiproxy org.pixelflow.toxiproxy=$toxiver" - "$TOXIPROXY" >/dev/null
fi

docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep -E '^pixelflow' | sort
