# eventline — run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO        ?= go
BIN       := bin/eventline
# The build command. The Dockerfile runs the same line (compose/compose_test.go checks it).
BUILD_CMD := go build -trimpath -o bin/eventline ./cmd/eventline
GOTEST    := $(GO) test -race -count=1 -timeout 15m
# Packages whose tests take their broker from EVENTLINE_TEST_KAFKA (kfake when
# unset). test-kafka runs them against the real Apache Kafka broker.
KAFKA_PKGS ?= ./...

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/eventline
	$(BUILD_CMD)

.PHONY: ensure-postgres
ensure-postgres: ## install PostgreSQL's server binaries if missing (root + apt), else say what to install
	@bash scripts/ensure-postgres.sh

.PHONY: ensure-java
ensure-java: ## install Java 17+ and Maven if missing (root + apt), else say what to install
	@bash scripts/ensure-java.sh

.PHONY: ensure-python
ensure-python: ## make sure python3 with venv works (interop tests with Confluent's Python client)
	@bash scripts/ensure-python.sh

.PHONY: demo
demo: build ensure-postgres ## run the orders/inventory saga on a fresh embedded stack and check its invariants
	./$(BIN) demo

.PHONY: test
test: ensure-postgres ensure-java ensure-python ## all unit and integration tests, with -race, on the embedded broker (kfake), then the outside module and the Helm chart
	$(GOTEST) ./...
	$(MAKE) --no-print-directory test-external
	$(MAKE) --no-print-directory test-deploy

.PHONY: test-external
test-external: ensure-postgres ## examples/external: another team's module (own go.mod, schemas, types) on `eventline dev`, public packages only
	(cd examples/external && $(GOTEST) ./...)

.PHONY: test-deploy
test-deploy: ## deploy/helm/eventline: render with Helm's libraries, lint, decode every object strictly, check its properties (own module: Helm and Kubernetes stay out of go.mod)
	cd deploy/chartcheck && $(GO) test -count=1 ./...

.PHONY: test-kafka
test-kafka: ensure-postgres ensure-java ensure-python ## the integration suite against a real Apache Kafka 4.x broker (started and stopped)
	@set -euo pipefail; \
	line=$$(bash scripts/kafka.sh up); export "$$line"; \
	trap 'bash scripts/kafka.sh down' EXIT; \
	echo "running the suite against $$line"; \
	$(GOTEST) $(KAFKA_PKGS); \
	(cd examples/external && $(GOTEST) ./...)

# Client ports of the failover cluster's nodes: FAILOVER_KAFKA_PORT, +2, +4
# (controllers one above each), apart from test-kafka's broker (29092).
FAILOVER_KAFKA_PORT ?= 29192

.PHONY: test-failover
test-failover: ensure-postgres ensure-java ## broker failover: a 3-node Apache Kafka cluster (RF 3, min ISR 2), a partition leader SIGKILLed under the relay (also transactional) and under a group, a transaction coordinator under a transactional relay
	@set -euo pipefail; \
	run=$$(mktemp -d -t eventline-failover.XXXXXX); \
	export EVENTLINE_KAFKA_DIR=$$run EVENTLINE_KAFKA_NODES=3 \
		EVENTLINE_KAFKA_PORT=$(FAILOVER_KAFKA_PORT) EVENTLINE_KAFKA_CONTROLLER_PORT=$$(( $(FAILOVER_KAFKA_PORT) + 1 )); \
	trap 'bash scripts/kafka.sh down; rm -rf "$$run"' EXIT; \
	line=$$(bash scripts/kafka.sh up); export "$$line"; \
	echo "running the failover tests against $$line"; \
	EVENTLINE_TEST_KAFKA_CLUSTER=$$run $(GOTEST) -p 1 -run '^TestFailover' ./relay/chaos ./consumers

.PHONY: kafka-up
kafka-up: ## start a real single-node Apache Kafka (KRaft) from Maven Central jars; prints EVENTLINE_TEST_KAFKA=…
	@bash scripts/kafka.sh up

.PHONY: kafka-down
kafka-down: ## stop the broker started by kafka-up
	@bash scripts/kafka.sh down

.PHONY: lint
lint: ## gofmt, go vet and staticcheck
	@unformatted=$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	cd examples/external && $(GO) vet ./...
	cd deploy/chartcheck && $(GO) vet ./...

.PHONY: generate
generate: ## regenerate generated code (go generate), here and in examples/external
	$(GO) generate ./...
	cd examples/external && $(GO) generate ./...

.PHONY: check-generate
check-generate: generate ## fail when generated code differs from what is committed
	@if ! git diff --quiet -- '*_gen.go' || [ -n "$$(git ls-files --others --exclude-standard -- '*_gen.go')" ]; then \
		echo "generated code is stale; run 'make generate' and commit:"; git status --short -- '*_gen.go'; exit 1; fi

.PHONY: bench
bench: ensure-postgres ## run the Go benchmarks
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./...

# The head-to-head's arguments (internal/tools/headtohead -help), e.g.
# PEERS_ARGS='--rounds 3 --watermill-events 200000'.
PEERS_ARGS ?=

.PHONY: bench-peers
bench-peers: ensure-postgres ensure-java ## head-to-head: eventline's relay (both modes), Debezium's outbox router in Kafka Connect, Watermill's SQL forwarder, on one PostgreSQL and a real Kafka 4.4 (docs/benchmarks/head-to-head.md; long, not in test or CI)
	bash scripts/bench-peers.sh $(PEERS_ARGS)

.PHONY: bench-peers-smoke
bench-peers-smoke: ensure-postgres ensure-java ## the head-to-head on tiny numbers (2,000 events, 200/s for 3 s), so its harness keeps working; fetches Connect and Debezium once (not in test or CI)
	bash scripts/bench-peers.sh --rounds 1 --events 2000 --rate 200 --warmup -1s --live-for 3s --broker-warmup -1

.PHONY: clean
clean: ## remove build output
	rm -rf bin
