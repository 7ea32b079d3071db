#!/usr/bin/env bash
# Makes `docker compose` (Compose v2, the CLI plugin) available, or says in
# one line why it cannot. Debian's docker-compose package is the old v1,
# too old for compose.yaml; the plugin builds from the Go module proxy
# (github.com/docker/compose/v5; `go install` refuses that module for its
# exclude directives, so it is built in a copy of the module's folder) and
# installs as ~/.docker/cli-plugins/docker-compose.
set -euo pipefail
version=v5.6.0
command -v docker >/dev/null || { echo "docker is not installed: the container path needs Docker Engine (https://docs.docker.com/engine/install/)" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "the Docker daemon does not answer (docker info fails): start it (sudo systemctl start docker)" >&2; exit 1; }
docker compose version >/dev/null 2>&1 && exit 0
command -v go >/dev/null || { echo "docker compose is missing and go is not installed to build it: install the docker-compose-plugin package" >&2; exit 1; }
echo "docker compose is missing: building the plugin $version from the Go module proxy (about a minute)" >&2
dir=$(go mod download -json "github.com/docker/compose/v5@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] || { echo "go mod download github.com/docker/compose/v5@$version named no folder" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$dir/." "$tmp/src" 2>/dev/null || cp -r "$dir" "$tmp/src"
chmod -R u+w "$tmp/src"
mkdir -p "$HOME/.docker/cli-plugins"
(cd "$tmp/src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/docker/compose/v5/internal.Version=$version" -o "$HOME/.docker/cli-plugins/docker-compose" ./cmd)
docker compose version
