# eventline: one binary (cmd/eventline) for the relay, the demo and the tools.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ENV CGO_ENABLED=0
RUN go build -trimpath -o bin/eventline ./cmd/eventline

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/bin/eventline /usr/local/bin/eventline
COPY --from=build /src/examples/events/eventline.yaml /etc/eventline/eventline.yaml
ENV EVENTLINE_CONFIG=/etc/eventline/eventline.yaml
USER nonroot
ENTRYPOINT ["/usr/local/bin/eventline"]
