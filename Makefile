# crs — the Community Recovery shared record.
#   make run    build and serve on 127.0.0.1:8080 with the embedded SQLite store
#   make test   everything CI runs: gofmt, vet, staticcheck, race tests (fuzz seeds included)
#   make bench  the performance figures quoted in the README

GO          ?= go
ADDR        ?= 127.0.0.1:8080
STORE       ?= sqlite:./data/crs.db
STATICCHECK_VERSION = v0.7.0
BIN         = bin/crs
GOBIN      ?= $(shell $(GO) env GOPATH)/bin

.PHONY: run build test vet staticcheck oidc-provider chromium unit generate bench bench-large fuzz clean

build:
	$(GO) build -o $(BIN) ./cmd/crs

# On first start with an empty store, the synthetic demo region is loaded first.
run: build
	./$(BIN) serve --addr $(ADDR) --store $(STORE) --demo-if-empty

test: vet staticcheck oidc-provider chromium unit

# The real OpenID provider the auth tests start (npm package oidc-provider, locked).
OIDC_DIR = auth/testdata/oidc
oidc-provider: $(OIDC_DIR)/node_modules/.package-lock.json
$(OIDC_DIR)/node_modules/.package-lock.json: $(OIDC_DIR)/package.json $(OIDC_DIR)/package-lock.json
	@command -v node >/dev/null 2>&1 || { apt-get update && apt-get install -y nodejs npm; }
	npm ci --prefix $(OIDC_DIR) --no-audit --no-fund

# The headless browser the MDT page tests drive (Debian chromium).
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update && apt-get install -y chromium; }

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

$(GOBIN)/staticcheck:
	$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

staticcheck: $(GOBIN)/staticcheck
	$(GOBIN)/staticcheck ./...

unit:
	$(GO) test -race -count=1 -timeout 12m ./...

# Regenerate the tables derived from ../shared/fhir-r4 (committed; the build never reads ../shared).
generate:
	$(GO) generate ./...

# Longer fuzzing than the seed runs in 'make test'.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./fhir/
	$(GO) test -run '^$$' -fuzz FuzzParseQuery -fuzztime $(FUZZTIME) ./fhir/search/
	$(GO) test -run '^$$' -fuzz FuzzValidate -fuzztime $(FUZZTIME) ./fhir/validate/
	$(GO) test -run '^$$' -fuzz FuzzBundle -fuzztime $(FUZZTIME) ./fhir/engine/
	$(GO) test -run '^$$' -fuzz FuzzApplyPatch -fuzztime $(FUZZTIME) ./fhir/
	$(GO) test -run '^$$' -fuzz FuzzCheck -fuzztime $(FUZZTIME) ./profiles/
	$(GO) test -run '^$$' -fuzz FuzzParseRequest -fuzztime $(FUZZTIME) ./measures/

bench: build
	./scripts/bench.sh

# The search benchmark at 10k and 1M resources (loading 1M takes a while).
bench-large: build
	REGION_SIZES="10000 1000000" ./scripts/bench.sh

clean:
	rm -rf bin data
