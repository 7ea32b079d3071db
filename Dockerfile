# Multi-stage: a static pixelflow binary on a small non-root runtime image.
# The builder is the exact Go release go.mod's go line names, and builds with
# that Go only (GOTOOLCHAIN=local, as the golang image sets it too): a
# floating tag would build with whatever patch release the host has cached,
# and an older one refuses the module. e2e's TestDockerfileBuilderMatchesGoMod
# keeps the two in step.
#
# The base images are build arguments so that the same file builds without
# a registry: `make images` passes local images made from this host's Go and
# a minimal root filesystem, and a context holding vendor/ with
# GOPROXY=off. With no arguments it builds exactly as it always did.
ARG GO_IMAGE=golang:1.26.8-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${GO_IMAGE} AS build
ENV GOTOOLCHAIN=local
# TAGS=failpoints builds the drills' binary (the suites' image).
ARG TAGS=
ARG GOPROXY
ARG GOFLAGS
WORKDIR /src
COPY go.mod go.sum ./
COPY third_party ./third_party
RUN if [ "$GOPROXY" != off ]; then go mod download; fi
COPY . .
RUN CGO_ENABLED=0 go build -tags "$TAGS" -trimpath -ldflags="-s -w" -o /out/pixelflow ./cmd/pixelflow

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/pixelflow /pixelflow
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/pixelflow"]
CMD ["serve"]
