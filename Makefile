# pixelflow — see README.md.
SHELL   := bash
GO      ?= go
# make test runs every package but the suites that run whole deployments.
# (Their helpers, such as chaos/cmd/scenarios, are tested.)
PKGS    ?= $(shell $(GO) list ./... | grep -v -e '/e2e$$' -e '/chaos$$' -e '/loadtest$$')
BIN     ?= bin/pixelflow

.PHONY: help images e2e-docker chaos-docker up-offline down-offline ensure-compose run build test test-mongo race lint bench e2e chaos chaos-scenario scenarios soak loadtest ensure-redis ensure-strace ensure-chromium up down

# help is first, so that make alone prints this map and starts nothing: each
# block of ## lines is one target, named before the first ': '.
## help: this list (the default goal): every target with what it does
help:
	@echo 'make TARGET [VAR=value]; the targets:'
	@awk '/^## / { l = substr($$0, 4); i = index(l, ": "); \
	    if (!inblock && i > 0) printf "  %-12s %s\n", substr(l, 1, i - 1), substr(l, i + 2); else printf "  %-12s %s\n", "", l; \
	    inblock = 1; next } { inblock = 0 }' $(firstword $(MAKEFILE_LIST))

## run: serve on embedded defaults (embedded store under ./data, private redis-server), http://localhost:8080
run: ensure-redis
	$(GO) run ./cmd/pixelflow serve

## build: the static binary, bin/pixelflow (BIN=path to put it elsewhere)
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/pixelflow

## test: every unit and integration test with the race detector (real redis-server children), then the one test too slow for it (10,000-event drain in bounded claims); make lint is its own target (CI runs both)
test: ensure-redis ensure-strace
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	$(GO) test -count=1 -timeout 5m -run 'TestLargeBacklogDrainsInBoundedSteps' -v ./internal/relay/ | grep -E '^(--- |ok|FAIL|PASS)|drained'; exit $${PIPESTATUS[0]}

## test-mongo: the store's contract suite (the one make test runs on the
## embedded engine) on a real replica set: make test-mongo MONGO_URI=mongodb://…
MONGO_URI ?=
test-mongo:
	@if [ -z "$(MONGO_URI)" ]; then \
	  echo "make test-mongo: MONGO_URI is not set. It runs the store's contract suite on a real replica set, e.g." >&2; \
	  echo "  make test-mongo MONGO_URI='mongodb://localhost:27017/?replicaSet=rs0&directConnection=true'" >&2; \
	  exit 2; fi
	MONGO_URI='$(MONGO_URI)' $(GO) test -tags mongo -race -count=1 -timeout 10m -run '^TestContractMongoDB$$' -v ./internal/store/ 2>&1 | grep -E '^(=== RUN|--- |\s+--- |ok|FAIL|PASS)|_test.go:|storetest.go:'; exit $${PIPESTATUS[0]}

## lint: go vet, gofmt, golangci-lint (.golangci.yml, pinned version
## installed once into bin/), the dependency rule (the binary links
## neither package testing nor any test-harness package), and licences
## (LICENSE, and one in each module copied under third_party/)
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := bin/golangci-lint-$(GOLANGCI_LINT_VERSION)
# What only tests, suites and drills may import.
HARNESS_DEPS := ^testing$$|^github\.com/pixelflow/pixelflow/(e2e|chaos|loadtest|internal/harness)(/|$$)|^github\.com/pixelflow/pixelflow/.*test$$

lint: $(GOLANGCI_LINT)
	@echo "lint: go vet, gofmt, golangci-lint, the dependency rule, licences"
	$(GO) vet ./...
	$(GO) vet -tags mongo ./internal/store/
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GOLANGCI_LINT) run --allow-serial-runners ./...
	@bad="$$($(GO) list -deps ./cmd/pixelflow | grep -E '$(HARNESS_DEPS)')"; \
	  if [ -n "$$bad" ]; then echo "the pixelflow binary links test-only packages:"; echo "$$bad"; \
	  echo "(go list -deps ./cmd/pixelflow; keep test helpers in their own packages)"; exit 1; fi
	@test -f LICENSE || { echo "LICENSE is missing"; exit 1; }
	@for d in third_party/*/; do ls "$$d" | grep -qiE '^(licen[cs]e|copying)' || { echo "$$d has no licence file (its licence must travel with the copy)"; exit 1; }; done

# Built once per version from the module proxy (go install needs no
# download of a prebuilt binary), kept under bin/ (ignored by git).
$(GOLANGCI_LINT):
	@echo "lint: building golangci-lint $(GOLANGCI_LINT_VERSION) from the module proxy, once (a few minutes on 2 cores; kept as $@)"
	@mkdir -p bin/.golangci-lint
	GOBIN=$(CURDIR)/bin/.golangci-lint $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv bin/.golangci-lint/golangci-lint $@

## bench: the first benchmarks of docs/benchmarks.md
bench: ensure-redis
	$(GO) test -run '^$$' -bench 'PlaceHTTP' -benchtime 5s -count 3 ./cmd/pixelflow/
	$(GO) test -run '^$$' -bench 'RelayDrain' -benchtime 2x -count 3 ./internal/relay/
	$(GO) test -run '^$$' -bench 'Broadcast1000|LoopbackFloor1000|Frames' -benchtime 3s -count 3 ./internal/gateway/

ensure-redis:
	@scripts/ensure-installed.sh redis-server redis-server

# strace slows a redis-server's disk on purpose (internal/harness/slowdisk):
# the redis-slow-disk drill and redisproc's tests.
ensure-strace:
	@scripts/ensure-installed.sh strace strace

## e2e: the end-to-end suites on real processes (docker provider when Docker
## is healthy and has its images, else local; E2E_PROVIDER=docker|local); artifacts in e2e/out
e2e: ensure-redis ensure-chromium
	@mkdir -p e2e/out
	$(GO) test -count=1 -timeout 8m -v -artifacts -outputdir $(CURDIR)/e2e/out ./e2e/ 2>&1 | tee e2e/out/e2e.log | grep -E '^(=== RUN   [A-Za-z]+$$|--- |PASS|FAIL|ok|e2e:|pixelflow suites:)|_test.go:|history |total |clean|FAIL|screenshot|resumes|outcomes'; exit $${PIPESTATUS[0]}

## e2e-docker: the docker provider for real (builds make images' images):
## pixelflow processes as containers on a network of their own, Redis in a
## container, the embedded store when the daemon has no MongoDB image
E2E_DOCKER_TESTS := ^(TestDockerProviderRunsContainers|TestHappyPath|TestReconnect|TestRestartAPI|TestBadInputAndIdempotency)$$
e2e-docker: images
	@mkdir -p e2e/out
	E2E_PROVIDER=docker E2E_DOCKER=1 TESTCONTAINERS_RYUK_DISABLED=true $(GO) test -count=1 -timeout 8m -v -run '$(E2E_DOCKER_TESTS)' \
	  -artifacts -outputdir $(CURDIR)/e2e/out ./e2e/ 2>&1 | tee e2e/out/e2e-docker.log | grep -E '^(=== RUN   [A-Za-z]+$$|--- |PASS|FAIL|ok|e2e:|pixelflow suites:)|_test.go:|history |total |clean|FAIL'; exit $${PIPESTATUS[0]}

# Any of these browsers will do, in this order (Debian's chromium; the GitHub
# runner image has /usr/bin/chromium and google-chrome); e2e/browser_test.go
# looks for the same names.
CHROMIUM_NAMES := chromium|chromium-browser|google-chrome|google-chrome-stable
ensure-chromium:
	@scripts/ensure-installed.sh '$(CHROMIUM_NAMES)' chromium

## images: every image the container path needs, built without a registry
## (pixelflow release and failpoints builds, Redis, toxiproxy); idempotent.
## scripts/images.sh --list names them
images:
	@scripts/images.sh

## up / down: the reference deployment (compose.yaml) on Docker with a
## registry (MongoDB replica set, Jaeger, Prometheus)
up: ensure-compose
	docker compose up -d --build --wait
down: ensure-compose
	docker compose down -v

## up-offline / down-offline: compose.offline.yaml, no registry needed
## (make images first): serve on the embedded store, a second gateway,
## Redis, toxiproxy; http://localhost:8080 and :8082
up-offline: ensure-compose images
	docker compose -f compose.offline.yaml up -d --wait
down-offline: ensure-compose
	docker compose -f compose.offline.yaml down -v

ensure-compose:
	@scripts/ensure-compose.sh

## chaos: the failure drills (CHAOS_PROFILE=short|drill, SCENARIO=name runs
## one); report in chaos/out/report.html.
## SCENARIO=nemesis [SEED=n] [DURATION=2m] [NEMESIS_MAX_CONCURRENT=2]: a
## seeded random schedule of overlapping faults, shrunk when it fails;
## NEMESIS_REDIS=sentinel runs it on a Sentinel-replicated Redis, drawing
## failover faults (make chaos SCENARIO=nemesis NEMESIS_REDIS=sentinel
## SEED=1 DURATION=2m);
## SCENARIO=replay SCHEDULE=path/schedule.json replays one exactly;
## SCENARIO=nemesis-teeth: a planted bug must be found and shrunk.
## Nemesis report and schedules in chaos/out/nemesis.
## SCENARIO=list (or make scenarios) lists the names; an unknown one fails.
SCENARIO ?=
CHAOS_PROFILE ?= short
SEED ?=
DURATION ?=
SCHEDULE ?=
NEMESIS_REDIS ?=
# The names and the tests they run are chaos.Selections, read through
# chaos/cmd/scenarios: a typo fails with the list, instead of passing on
# "no tests to run".
SCENARIOS = $(GO) build -o bin/scenarios ./chaos/cmd/scenarios && bin/scenarios
ifeq ($(SCENARIO),list)
chaos: scenarios
else
chaos: chaos-scenario ensure-redis ensure-strace
	@mkdir -p chaos/out
	@if [ "$(SCENARIO)" = replay ] && [ -z "$(SCHEDULE)" ]; then echo "SCENARIO=replay needs SCHEDULE=path/to/schedule.json" >&2; exit 2; fi
	run="$$($(SCENARIOS) -run '$(SCENARIO)')" && \
	CHAOS_PROFILE=$(CHAOS_PROFILE) CHAOS_OUT=$(CURDIR)/chaos/out NEMESIS_SEED=$(SEED) NEMESIS_DURATION=$(DURATION) \
	  NEMESIS_REDIS=$(NEMESIS_REDIS) NEMESIS_SCHEDULE=$(if $(SCHEDULE),$(abspath $(SCHEDULE))) $(GO) test -count=1 -timeout $(CHAOS_TIMEOUT) -v \
	  -run "$$run" ./chaos/ 2>&1 | tee chaos/out/chaos.log | \
	  grep -E '^(--- |PASS|FAIL|ok|pixelflow suites:)|t= |pass |FAIL|not run|fault |resiliency|caught|^ +[a-z-]+ +(pass|fail|not run)$$|chaos report|nemesis|shrink|replay|seed|other processes|running it once more|^ +[0-9.]+s– *[0-9.]+s'; exit $${PIPESTATUS[0]}
endif
CHAOS_TIMEOUT ?= 60m

## chaos-docker: the container drills on the docker provider (network
## disconnects, docker kill, restart and pause), every one required to run,
## then a 60 s nemesis with the container faults (SEED=1)
chaos-docker: images
	E2E_PROVIDER=docker CHAOS_MUST_RUN=1 TESTCONTAINERS_RYUK_DISABLED=true $(MAKE) chaos SCENARIO=containers
	E2E_PROVIDER=docker TESTCONTAINERS_RYUK_DISABLED=true $(MAKE) chaos SCENARIO=nemesis SEED=1 DURATION=60s NEMESIS_SHRINK_BUDGET=3m

# chaos-scenario refuses an unknown SCENARIO before anything is installed
# or started.
chaos-scenario:
	@$(SCENARIOS) -run '$(SCENARIO)' >/dev/null

## scenarios: the names make chaos SCENARIO= takes, with what each does
scenarios:
	@$(SCENARIOS)

## soak: the nemesis for DURATION (default 30m) with resource growth
## checked (RSS, goroutines, open files, Redis memory, stream length, store
## size: last third vs first third); report in chaos/out/soak
soak: ensure-redis ensure-strace
	@mkdir -p chaos/out
	CHAOS_OUT=$(CURDIR)/chaos/out NEMESIS_SEED=$(SEED) NEMESIS_DURATION=$(DURATION) \
	  $(GO) test -count=1 -timeout $(or $(SOAK_TIMEOUT),24h) -v -run '^TestSoak$$' ./chaos/ 2>&1 | tee chaos/out/soak.log | \
	  grep -E '^(--- |PASS|FAIL|ok|pixelflow suites:)|pass |FAIL|soak|resource|replay|seed'; exit $${PIPESTATUS[0]}

## loadtest: P50/P99 broadcast latency under load, history-checked
## (SCENARIO=smoke|steady|capacity; LOADTEST_FLAGS for the rest, see
## go run ./loadtest -h); report in loadtest/out/report.html
LOADTEST_FLAGS ?=
loadtest: ensure-redis
	$(GO) run ./loadtest -scenario $(or $(SCENARIO),smoke) -out $(CURDIR)/loadtest/out $(LOADTEST_FLAGS)
