// Package metrics counts what pacsd does, for Prometheus: associations,
// DIMSE operations, HTTP requests, durations of the work that matters to a
// sender or a viewer (C-STORE, QIDO-RS, WADO-RS, STOW-RS, storage reads and
// writes, index commits), bytes on the wire, what the archive holds, the
// forwarding queue, migrations and the spool. Every name starts with
// "pacsd_"; docs/metrics.md lists them and deploy/grafana has a dashboard
// built on them.
//
// A Registry is made by New and passed to the parts that report to it; it
// owns its own prometheus.Registry, never the global default one, so two
// servers in one process (as in tests) count apart. Each event has a small
// typed method (ObserveCStore, ObserveAssociation, SetQueue…), so that
// instrumenting a call site is one line, and every method is safe to call
// on a nil *Registry, which counts nothing: a component that was given no
// registry needs no check.
//
// The gauges of what waits (the forwarding queue of each destination,
// migrations, the spool, and what the index holds) are best read when
// scraped, so that a queue that has just grown shows so at once:
// ReadAtScrape installs the function that reads them, and a scrape calls
// it at most once per the age it is given, so that Prometheus servers
// scraping at once read the archive once. The Set methods record them
// otherwise.
//
// Label values are bounded, because every distinct value is a time series
// that Prometheus keeps: calling AE titles are the configured ones plus
// "other", HTTP routes are route patterns (never raw paths), methods and
// statuses outside the usual few are folded into "other".
//
// The package is built on github.com/prometheus/client_golang, which
// encodes the exposition formats and keeps the counters lock-free; it only
// adds the names, the label bounds and the wiring helpers.
package metrics
