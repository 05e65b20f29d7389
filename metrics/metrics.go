package metrics

import (
	"net/http"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config says what a Registry knows in advance.
type Config struct {
	// KnownAEs are the AE titles that get a label value of their own
	// (the allow-listed calling AEs and the remote AEs); any other
	// calling AE is counted as "other".
	KnownAEs []string
	// Version is reported by pacsd_build_info.
	Version string
	// Runtime adds the Go runtime's and the process's collectors (go_*
	// and process_*: memory, goroutines, file descriptors, CPU). They are
	// the only names without the pacsd_ prefix, so they are off unless
	// asked for.
	Runtime bool
}

// Registry holds pacsd's metrics. Its methods are safe for concurrent use
// and do nothing on a nil *Registry.
type Registry struct {
	reg *prometheus.Registry
	aes aeLabels

	statuses *cappedLabel // DIMSE status codes seen, bounded

	associations       *prometheus.CounterVec
	activeAssociations prometheus.Gauge
	dimseOps           *prometheus.CounterVec
	dimseDuration      *prometheus.HistogramVec

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec

	received *prometheus.CounterVec
	sent     *prometheus.CounterVec

	storedInstances *prometheus.CounterVec
	storedBytes     *prometheus.CounterVec

	storageDuration *prometheus.HistogramVec
	storageErrors   *prometheus.CounterVec
	indexDuration   *prometheus.HistogramVec
	indexErrors     *prometheus.CounterVec

	migrationTransferred *prometheus.CounterVec
	migrationBytes       *prometheus.CounterVec

	// state reports the index's counts, the forwarding queue, the
	// migrations and the spool (state.go).
	state *stateCollector

	compress *compressMetrics
}

// Buckets of the duration histograms, in seconds: from a millisecond, a
// fast index commit, to a minute, a large instance over a slow link.
var (
	requestBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	commitBuckets  = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5}
)

// New returns a Registry with every collector registered.
func New(cfg Config) *Registry {
	r := &Registry{
		reg:      prometheus.NewRegistry(),
		aes:      newAELabels(cfg.KnownAEs),
		statuses: newCappedLabel(maxStatusLabels),
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pacsd_" + name, Help: help}, labels)
		r.reg.MustRegister(c)
		return c
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pacsd_" + name, Help: help}, labels)
		r.reg.MustRegister(g)
		return g
	}
	histogram := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pacsd_" + name, Help: help, Buckets: buckets}, labels)
		r.reg.MustRegister(h)
		return h
	}
	r.state = newStateCollector()
	r.reg.MustRegister(r.state)
	single := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "pacsd_" + name, Help: help})
		r.reg.MustRegister(g)
		return g
	}

	r.associations = counter("dimse_associations_total",
		"DIMSE associations requested, by calling AE title (configured ones, else other) and result (accepted or rejected).",
		"calling_ae", "result")
	r.activeAssociations = single("dimse_associations_active", "DIMSE associations open now.")
	r.dimseOps = counter("dimse_operations_total",
		"DIMSE operations answered as SCP or performed as SCU, by operation (C-STORE, C-FIND…) and final status (hexadecimal).",
		"operation", "status")
	r.dimseDuration = histogram("dimse_operation_duration_seconds",
		"Time from a DIMSE request to its final response, by operation.", requestBuckets, "operation")

	r.httpRequests = counter("http_requests_total",
		"HTTP requests, by route pattern, method and status code.", "route", "method", "status")
	r.httpDuration = histogram("http_request_duration_seconds",
		"Time from an HTTP request to the end of its response, by service (qido, wado, stow, wado_uri, api, ui, other) and route pattern.",
		requestBuckets, "service", "route")

	r.received = counter("received_bytes_total", "Bytes received on network connections, by protocol (dimse or http).", "protocol")
	r.sent = counter("sent_bytes_total", "Bytes sent on network connections, by protocol (dimse or http).", "protocol")

	r.storedInstances = counter("stored_instances_total",
		"Instances archived, by source (dimse, stow, migrate, import, retrieve) and calling AE title (none but for dimse).", "source", "calling_ae")
	r.storedBytes = counter("stored_bytes_total", "Bytes of the data sets archived, by source.", "source")

	r.storageDuration = histogram("storage_operation_duration_seconds",
		"Time of a storage operation (put: the whole write until durable; get: opening an object), by backend and operation.",
		requestBuckets, "backend", "operation")
	r.storageErrors = counter("storage_errors_total",
		"Storage operations that failed, by backend (file, s3, spool) and operation.", "backend", "operation")
	r.indexDuration = histogram("index_operation_duration_seconds",
		"Time of an index operation (commit: an instance's row made durable), by operation.", commitBuckets, "operation")
	r.indexErrors = counter("index_errors_total", "Index operations that failed, by operation.", "operation")

	r.migrationTransferred = counter("migration_instances_total", "Instances a migration has brought in, by source.", "source")
	r.migrationBytes = counter("migration_bytes_total", "Bytes a migration has brought in, by source.", "source")

	r.compress = newCompressMetrics(r.reg)

	info := gauge("build_info", "Always 1; its labels say which pacsd this is.", "version", "goversion")
	info.WithLabelValues(orUnknown(cfg.Version), runtime.Version()).Set(1)

	if cfg.Runtime {
		r.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return r
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// Handler serves the metrics in the Prometheus text format (or
// OpenMetrics, when the scraper asks for it), at GET /metrics.
func (r *Registry) Handler() http.Handler {
	if r == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		// A failing collector must not hide the others: report what can
		// be gathered and log the rest through the scrape's status.
		ErrorHandling:       promhttp.ContinueOnError,
		EnableOpenMetrics:   true,
		MaxRequestsInFlight: 4,
	})
}

// Gatherer exposes the underlying registry, for tests and for adding a
// collector that pacsd's own packages do not know of.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// ObserveAssociation counts an association request from callingAE:
// accepted or rejected. An accepted one counts as active until
// AssociationClosed.
func (r *Registry) ObserveAssociation(callingAE string, accepted bool) {
	if r == nil {
		return
	}
	result := "rejected"
	if accepted {
		result = "accepted"
		r.activeAssociations.Inc()
	}
	r.associations.WithLabelValues(r.aes.label(callingAE), result).Inc()
}

// AssociationClosed ends an association counted as accepted, whether it
// was released or aborted.
func (r *Registry) AssociationClosed() {
	if r == nil {
		return
	}
	r.activeAssociations.Dec()
}

// DIMSE operation names, as the operation label spells them.
const (
	CEcho        = "C-ECHO"
	CStore       = "C-STORE"
	CFind        = "C-FIND"
	CMove        = "C-MOVE"
	CGet         = "C-GET"
	NAction      = "N-ACTION"
	NEventReport = "N-EVENT-REPORT"
)

var dimseOperations = []string{CEcho, CStore, CFind, CMove, CGet, NAction, NEventReport}

// ObserveDIMSE counts a DIMSE operation of type op (CEcho, CFind…) that
// ended with status after d: an SCP's final response, or the final
// response an SCU received.
func (r *Registry) ObserveDIMSE(op string, status uint16, d time.Duration) {
	if r == nil {
		return
	}
	if !slices.Contains(dimseOperations, op) {
		op = "other"
	}
	r.dimseOps.WithLabelValues(op, r.statuses.label(statusHex(status))).Inc()
	r.dimseDuration.WithLabelValues(op).Observe(d.Seconds())
}

// ObserveCStore counts a C-STORE answered as SCP: the calling AE, the
// status sent, the time from the request to the response and the bytes
// of the data set. A success (0x0000) or warning (0xBxxx) counts the
// instance as stored from source "dimse".
func (r *Registry) ObserveCStore(callingAE string, status uint16, d time.Duration, bytes int64) {
	if r == nil {
		return
	}
	r.ObserveDIMSE(CStore, status, d)
	if status == 0 || status&0xF000 == 0xB000 {
		r.ObserveStored("dimse", callingAE, bytes)
	}
}

// ObserveStored counts an instance archived from source (dimse, stow,
// migrate, import, retrieve) with a data set of bytes. callingAE is the
// sender's AE title for DIMSE, and empty for the others.
func (r *Registry) ObserveStored(source, callingAE string, bytes int64) {
	if r == nil {
		return
	}
	source = oneOf(source, "dimse", "stow", "migrate", "import", "retrieve")
	ae := "none"
	if callingAE != "" {
		ae = r.aes.label(callingAE)
	}
	r.storedInstances.WithLabelValues(source, ae).Inc()
	if bytes > 0 {
		r.storedBytes.WithLabelValues(source).Add(float64(bytes))
	}
}

// IndexCounts are the numbers of entities at each level of the index.
type IndexCounts struct {
	Patients, Studies, Series, Instances int
}

// SetIndexCounts records what the index holds, until the next read of
// ReadAtScrape, if any.
func (r *Registry) SetIndexCounts(c IndexCounts) {
	if r == nil {
		return
	}
	r.state.update(func(s *Snapshot) { s.Index = &c })
}

// ObserveStoragePut records a write of bytes to a storage backend (file,
// s3, spool) that took d and failed with err, if not nil.
func (r *Registry) ObserveStoragePut(backend string, d time.Duration, err error) {
	r.observeStorage(backend, "put", d, err)
}

// ObserveStorageGet records the opening of an object for reading.
func (r *Registry) ObserveStorageGet(backend string, d time.Duration, err error) {
	r.observeStorage(backend, "get", d, err)
}

// ObserveStorageError counts a failure of another storage operation
// (stat, delete, list).
func (r *Registry) ObserveStorageError(backend, operation string) {
	if r == nil {
		return
	}
	r.storageErrors.WithLabelValues(oneOf(backend, "file", "s3", "spool"), oneOf(operation, "put", "get", "stat", "delete", "list")).Inc()
}

func (r *Registry) observeStorage(backend, op string, d time.Duration, err error) {
	if r == nil {
		return
	}
	backend = oneOf(backend, "file", "s3", "spool")
	r.storageDuration.WithLabelValues(backend, op).Observe(d.Seconds())
	if err != nil {
		r.storageErrors.WithLabelValues(backend, op).Inc()
	}
}

// ObserveIndexCommit records an instance's index row committed in d, or
// failing with err.
func (r *Registry) ObserveIndexCommit(d time.Duration, err error) {
	if r == nil {
		return
	}
	r.indexDuration.WithLabelValues("commit").Observe(d.Seconds())
	if err != nil {
		r.indexErrors.WithLabelValues("commit").Inc()
	}
}

// ObserveIndexError counts an index operation other than a commit
// (query, delete, count) that failed.
func (r *Registry) ObserveIndexError(operation string) {
	if r == nil {
		return
	}
	r.indexErrors.WithLabelValues(oneOf(operation, "commit", "query", "delete", "count", "queue", "migration")).Inc()
}

// QueueState is what the forwarding queue holds for one destination.
type QueueState struct {
	Pending, InFlight, Failed int
	// OldestPending is the age of the oldest pending task; 0 when none.
	OldestPending time.Duration
}

// SetQueue records the forwarding queue of destination, until the next
// read of ReadAtScrape, if any. Destinations are configured, so their
// names are a bounded set.
func (r *Registry) SetQueue(destination string, q QueueState) {
	if r == nil {
		return
	}
	r.state.update(func(s *Snapshot) { s.Queues[destination] = q })
}

// RemoveQueue forgets a destination that is no longer configured.
func (r *Registry) RemoveQueue(destination string) {
	if r == nil {
		return
	}
	r.state.update(func(s *Snapshot) { delete(s.Queues, destination) })
}

// MigrationState counts the studies of a migration by state.
type MigrationState struct {
	Pending, Done, Verified, Failed, Conflict int
}

// SetMigration records the studies of the migration from source (a
// remote AE title or a DICOMweb root), until the next read of
// ReadAtScrape, if any.
func (r *Registry) SetMigration(source string, m MigrationState) {
	if r == nil {
		return
	}
	r.state.update(func(s *Snapshot) { s.Migrations[source] = m })
}

// ObserveMigrated counts instances (and their bytes) that a migration from
// source brought in.
func (r *Registry) ObserveMigrated(source string, instances int, bytes int64) {
	if r == nil {
		return
	}
	r.migrationTransferred.WithLabelValues(source).Add(float64(instances))
	r.migrationBytes.WithLabelValues(source).Add(float64(bytes))
}

// SetSpoolBacklog records what the spool holds that S3 does not have
// yet, until the next read of ReadAtScrape, if any.
func (r *Registry) SetSpoolBacklog(objects int, bytes int64) {
	if r == nil {
		return
	}
	r.state.update(func(s *Snapshot) { s.Spool = &SpoolBacklog{objects, bytes} })
}

// statusHex formats a DIMSE status as its label: "0x0000".
func statusHex(s uint16) string {
	const digits = "0123456789ABCDEF"
	return string([]byte{'0', 'x', digits[s>>12], digits[s>>8&0xF], digits[s>>4&0xF], digits[s&0xF]})
}

// oneOf returns s when it is one of allowed, otherwise "other": labels
// that callers pass as strings stay a bounded set even if a caller errs.
func oneOf(s string, allowed ...string) string {
	if slices.Contains(allowed, s) {
		return s
	}
	return "other"
}

// methodLabel folds an HTTP method into a bounded label.
func methodLabel(m string) string {
	switch m = strings.ToUpper(m); m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions, http.MethodPatch:
		return m
	}
	return "other"
}
