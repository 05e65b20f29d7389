# pacsd: the two commands a newcomer needs are `make run` and `make test`.

GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Real peers (dcmtk, Orthanc) see loopback only; Nagle plus delayed ACK
# would add 40 ms to every DIMSE message they send.
export TCP_NODELAY := 1

.PHONY: build run test deps build-deps lint vet fmt staticcheck bench fuzz fuzz-long clean

# The pixel data codecs link C libraries that Debian packages (see the
# README, "Codecs: which library does what"); build-deps installs any that
# is missing, or says what to install.
build: build-deps
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/pacsd ./cmd/pacsd

# Runs pacsd on the embedded defaults: objects and index under ./data,
# DIMSE on 127.0.0.1:11112 (AE title PACSD), HTTP on 127.0.0.1:8042.
run: build-deps
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/pacsd serve

# Installs the peers the tests run against if any is missing, checks
# formatting, vet and staticcheck, then runs every test with the race
# detector.
test: deps lint
	$(GO) test -race -count=1 -timeout 30m ./...

deps:
	@scripts/install-test-deps

build-deps:
	@scripts/install-test-deps --build

lint: vet fmt staticcheck

vet:
	$(GO) vet ./...

# staticcheck runs from the module proxy at a pinned version, cached after
# the first run.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
staticcheck:
	$(GO) run $(STATICCHECK) ./...

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# Benchmarks pacsd side by side with dcmtk's storescp and Orthanc on the
# same corpora in one run, printing figures, ratios and targets: C-STORE
# throughput on one association and on 8 at once (beside storescp --fork
# and Orthanc, with where each instance's time goes), pacsd's peak RSS while it stores one 1 GiB instance, C-FIND
# latency on an index of 100,000 instances, C-MOVE of a 300-instance study
# to storescp, and DICOMweb beside Orthanc's plugin: STOW-RS of that study,
# QIDO-RS on the C-FIND index, metadata of a 1,000-instance series and
# WADO-RS retrieve against a raw read of pacsd's files (-skip-web leaves it
# out), C-STORE over DICOM TLS beside plain TCP and QIDO-RS with OIDC
# token validation beside none (-skip-security), pixel data decoding beside
# dcmtk and GDCM (-skip-codec), and C-GET of a JPEG-LS study by an SCU of
# uncompressed syntaxes beside the study stored uncompressed and Orthanc
# (-skip-get-convert), forwarding through pacsd (-skip-forward), and
# hiding a deleted 1,000-instance study and purging the trash on SQLite and
# PostgreSQL beside a loop of os.Remove (-skip-trash). It
# measures the pacsd that `build` made. The whole run takes some
# 35 minutes; a quick one:
# make bench BENCHFLAGS='-rounds 1 -instances 50 -conc-instances 50 -skip-big -find-instances 5000 -find-reps 10'
bench: deps build
	$(GO) run ./internal/bench -pacsd bin/pacsd $(BENCHFLAGS)

# Runs each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./archive -run '^$$' -fuzz FuzzParseKey -fuzztime $(FUZZTIME)
	$(GO) test ./archive -run '^$$' -fuzz FuzzOpenOriginal -fuzztime $(FUZZTIME)
	$(GO) test ./dicom -run '^$$' -fuzz FuzzScanner -fuzztime $(FUZZTIME)
	$(GO) test ./dicom -run '^$$' -fuzz FuzzTranscode -fuzztime $(FUZZTIME)
	$(GO) test ./dicom -run '^$$' -fuzz FuzzTextDecoder -fuzztime $(FUZZTIME)
	$(GO) test ./dicom -run '^$$' -fuzz FuzzParseJSON -fuzztime $(FUZZTIME)
	$(GO) test ./dicom -run '^$$' -fuzz FuzzInflatedObject -fuzztime $(FUZZTIME)
	$(GO) test ./dicom -run '^$$' -fuzz FuzzAmend -fuzztime $(FUZZTIME)
	$(GO) test ./nhs -run '^$$' -fuzz FuzzNormalize -fuzztime $(FUZZTIME)
	$(GO) test ./dicom/render -run '^$$' -fuzz FuzzRender -fuzztime $(FUZZTIME)
	$(GO) test ./dicom/codec -run '^$$' -fuzz '^FuzzJPEG$$' -fuzztime $(FUZZTIME)
	$(GO) test ./dicom/codec -run '^$$' -fuzz FuzzJPEGLossless -fuzztime $(FUZZTIME)
	$(GO) test ./dicom/codec -run '^$$' -fuzz FuzzJPEGLS -fuzztime $(FUZZTIME)
	$(GO) test ./dicom/codec -run '^$$' -fuzz FuzzJPEG2000 -fuzztime $(FUZZTIME)
	$(GO) test ./dicom/codec -run '^$$' -fuzz FuzzHTJ2K -fuzztime $(FUZZTIME)
	$(GO) test ./dicom/codec -run '^$$' -fuzz FuzzRLE -fuzztime $(FUZZTIME)
	$(GO) test ./dicom/codec -run '^$$' -fuzz FuzzTranscode -fuzztime $(FUZZTIME)
	$(GO) test ./dimse/internal/pdu -run '^$$' -fuzz FuzzReader -fuzztime $(FUZZTIME)
	$(GO) test ./dimse/internal/cmdset -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME)
	$(GO) test ./auth -run '^$$' -fuzz FuzzParseTokenFile -fuzztime $(FUZZTIME)
	$(GO) test ./auth -run '^$$' -fuzz FuzzParseAEEntry -fuzztime $(FUZZTIME)
	$(GO) test ./deid -run '^$$' -fuzz FuzzRewrite -fuzztime $(FUZZTIME)
	$(GO) test ./dicomweb -run '^$$' -fuzz FuzzSearchParams -fuzztime $(FUZZTIME)
	$(GO) test ./dicomweb -run '^$$' -fuzz FuzzStow -fuzztime $(FUZZTIME)
	$(GO) test ./dicomweb -run '^$$' -fuzz FuzzAccept -fuzztime $(FUZZTIME)
	$(GO) test ./migrate -run '^$$' -fuzz FuzzOpenInstance -fuzztime $(FUZZTIME)
	$(GO) test ./migrate -run '^$$' -fuzz FuzzParseKey -fuzztime $(FUZZTIME)
	$(GO) test ./audit -run '^$$' -fuzz FuzzJournal -fuzztime $(FUZZTIME)
	$(GO) test ./storage -run '^$$' -fuzz FuzzValidKey -fuzztime $(FUZZTIME)

# Runs every fuzz target for 10 minutes (some 4 hours in all).
fuzz-long:
	$(MAKE) fuzz FUZZTIME=10m

clean:
	rm -rf bin
