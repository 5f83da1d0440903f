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

.PHONY: run build test vet staticcheck oidc-provider chromium unit generate testdata bench bench-large fuzz clean destroy-data

# The version and commit 'crs version' prints (the environment may build with -buildvcs=false).
COMMIT     := $(shell git rev-parse --short=12 HEAD 2>/dev/null)
DIRTY      := $(shell test -n "$$(git status --porcelain 2>/dev/null)" && echo -dirty)
LDFLAGS     = -X main.commit=$(COMMIT)$(DIRTY)

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/crs

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

# The headless browser the MDT page tests (measures) and the CORS test (server) drive (Debian chromium).
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
generate: testdata
	$(GO) generate ./...

# Refresh the R4 fixtures the tests read (testdata/README.md) from ../shared/fhir-r4.
SHARED_R4 ?= ../shared/fhir-r4
testdata:
	rm -rf testdata/r4/examples && mkdir -p testdata/r4/examples
	cp $(SHARED_R4)/examples/*.json testdata/r4/examples/
	gzip -9nc $(SHARED_R4)/search-parameters.json > testdata/r4/search-parameters.json.gz

# Longer fuzzing than the seed runs in 'make test'.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./fhir/
	$(GO) test -run '^$$' -fuzz '^FuzzParseText$$' -fuzztime $(FUZZTIME) ./fhir/
	$(GO) test -run '^$$' -fuzz '^FuzzMarshalString$$' -fuzztime $(FUZZTIME) ./fhir/
	$(GO) test -run '^$$' -fuzz '^FuzzKeyOrder$$' -fuzztime $(FUZZTIME) ./fhir/
	$(GO) test -run '^$$' -fuzz '^FuzzMarshalSorted$$' -fuzztime $(FUZZTIME) ./fhir/
	$(GO) test -run '^$$' -fuzz FuzzParseQuery -fuzztime $(FUZZTIME) ./fhir/search/
	$(GO) test -run '^$$' -fuzz FuzzValidate -fuzztime $(FUZZTIME) ./fhir/validate/
	$(GO) test -run '^$$' -fuzz FuzzXHTML -fuzztime $(FUZZTIME) ./fhir/validate/
	$(GO) test -run '^$$' -fuzz FuzzValidateLocated -fuzztime $(FUZZTIME) ./fhir/validate/
	$(GO) test -run '^$$' -fuzz FuzzBundle -fuzztime $(FUZZTIME) ./fhir/engine/
	$(GO) test -run '^$$' -fuzz FuzzResource -fuzztime $(FUZZTIME) ./fhir/engine/
	$(GO) test -run '^$$' -fuzz FuzzSearch -fuzztime $(FUZZTIME) ./fhir/engine/
	$(GO) test -run '^$$' -fuzz FuzzPatientOf -fuzztime $(FUZZTIME) ./fhir/engine/
	$(GO) test -run '^$$' -fuzz FuzzRendered -fuzztime $(FUZZTIME) ./audit/
	$(GO) test -run '^$$' -fuzz FuzzApplyPatch -fuzztime $(FUZZTIME) ./fhir/
	$(GO) test -run '^$$' -fuzz FuzzCheck -fuzztime $(FUZZTIME) ./profiles/
	$(GO) test -run '^$$' -fuzz FuzzCSVReader -fuzztime $(FUZZTIME) ./mapping/
	$(GO) test -run '^$$' -fuzz FuzzDecodeTree -fuzztime $(FUZZTIME) ./mapping/
	$(GO) test -run '^$$' -fuzz FuzzCLD -fuzztime $(FUZZTIME) ./mapping/cld/
	$(GO) test -run '^$$' -fuzz FuzzVisits -fuzztime $(FUZZTIME) ./mapping/visits/
	$(GO) test -run '^$$' -fuzz FuzzTherapy -fuzztime $(FUZZTIME) ./mapping/therapy/
	$(GO) test -run '^$$' -fuzz '^FuzzCarePlans$$' -fuzztime $(FUZZTIME) ./mapping/careplans/
	$(GO) test -run '^$$' -fuzz '^FuzzCarePlansJSON$$' -fuzztime $(FUZZTIME) ./mapping/careplans/
	$(GO) test -run '^$$' -fuzz FuzzParseRequest -fuzztime $(FUZZTIME) ./measures/
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) ./mapping/hl7v2/
	$(GO) test -run '^$$' -fuzz FuzzReadFrame -fuzztime $(FUZZTIME) ./mapping/mllp/
	$(GO) test -run '^$$' -fuzz FuzzProcess -fuzztime $(FUZZTIME) ./mapping/bars/
	$(GO) test -run '^$$' -fuzz FuzzParseSpec -fuzztime $(FUZZTIME) ./subscriptions/

bench: build
	./scripts/bench.sh

# The search benchmark at 10k and 1M resources (loading 1M takes a while).
bench-large: build
	REGION_SIZES="10000 1000000" ./scripts/bench.sh

# Build output only: the database and its audit trail under ./data are never touched here.
clean:
	rm -rf bin

# Deletes every record and the audit trail under ./data. Asks first; without a
# terminal it refuses unless CONFIRM=yes.
destroy-data:
	@if [ ! -e data ]; then echo "no ./data to destroy"; exit 0; fi; \
	if [ "$(CONFIRM)" != yes ]; then \
		if [ ! -t 0 ]; then echo "destroy-data: refusing without a terminal; run 'make destroy-data CONFIRM=yes' to delete ./data"; exit 1; fi; \
		printf 'This deletes ./data: every record and the audit trail. Type "destroy" to go on: '; read answer; \
		[ "$$answer" = destroy ] || { echo "kept ./data"; exit 1; }; \
	fi; \
	rm -rf data && echo "deleted ./data"
