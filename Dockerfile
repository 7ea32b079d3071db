# Multi-stage: a static pixelflow binary on a small non-root runtime image.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
COPY third_party ./third_party
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/pixelflow ./cmd/pixelflow

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/pixelflow /pixelflow
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/pixelflow"]
CMD ["serve"]
