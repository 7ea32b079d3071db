# Multi-stage: a static pixelflow binary on a small non-root runtime image.
# The builder is the exact Go release go.mod's go line names, and builds with
# that Go only (GOTOOLCHAIN=local, as the golang image sets it too): a
# floating tag would build with whatever patch release the host has cached,
# and an older one refuses the module. e2e's TestDockerfileBuilderMatchesGoMod
# keeps the two in step.
FROM golang:1.26.8-bookworm AS build
ENV GOTOOLCHAIN=local
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/pixelflow ./cmd/pixelflow

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/pixelflow /pixelflow
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/pixelflow"]
CMD ["serve"]
