package metrics

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Snapshot is what the archive holds at one moment: the gauges that say
// how much work is waiting. A nil field is one that could not be read;
// its gauges keep the values they had.
type Snapshot struct {
	Index *IndexCounts
	// Queues holds the forwarding queue of every destination; one
	// that is missing is no longer reported.
	Queues map[string]QueueState
	// Migrations holds the studies of every migration, by source.
	Migrations map[string]MigrationState
	Spool      *SpoolBacklog
}

// SpoolBacklog is what the spool holds that S3 does not have yet.
type SpoolBacklog struct {
	Objects int
	Bytes   int64
}

// ReadAtScrape makes the gauges of Snapshot show what read returns when
// /metrics is scraped, rather than what was last set, so that a queue
// that has just grown shows so in the next scrape. read is called during
// the scrape, with a context that ends after timeout, and its Snapshot
// serves every scrape for maxAge after: a burst of scrapes, or several
// Prometheus servers, read the archive once. read should cost little
// whatever the archive holds, as a scrape waits for it.
func (r *Registry) ReadAtScrape(read func(context.Context) Snapshot, maxAge, timeout time.Duration) {
	if r == nil {
		return
	}
	s := r.state
	s.mu.Lock()
	defer s.mu.Unlock()
	s.read, s.maxAge, s.timeout, s.readAt = read, maxAge, timeout, time.Time{}
}

// stateCollector reports the gauges of a Snapshot: those last set by
// the Set methods, or read at scrape time (ReadAtScrape).
type stateCollector struct {
	index, queueTasks, queueOldest, migration, spoolObjects, spoolBytes *prometheus.Desc

	mu   sync.Mutex
	last Snapshot
	// read, when set, is called by a scrape once the Snapshot read at
	// readAt is older than maxAge.
	read            func(context.Context) Snapshot
	maxAge, timeout time.Duration
	readAt          time.Time
}

func newStateCollector() *stateCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("pacsd_"+name, help, labels, nil)
	}
	return &stateCollector{
		index: desc("index_entities",
			"What the index holds, by level (patient, study, series, instance).", "level"),
		queueTasks: desc("queue_tasks",
			"Forwarding tasks, by destination and state (pending, in_flight, failed).", "destination", "state"),
		queueOldest: desc("queue_oldest_pending_seconds",
			"Age of the oldest pending forwarding task, by destination (0 when none is pending).", "destination"),
		migration: desc("migration_studies",
			"Studies of a migration, by source and state (pending, done, verified, failed, conflict).", "source", "state"),
		spoolObjects: desc("spool_backlog_objects", "Objects in the local spool not yet uploaded to S3."),
		spoolBytes:   desc("spool_backlog_bytes", "Bytes in the local spool not yet uploaded to S3."),
		last: Snapshot{
			Queues:     map[string]QueueState{},
			Migrations: map[string]MigrationState{},
			Spool:      &SpoolBacklog{},
		},
	}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.index, c.queueTasks, c.queueOldest, c.migration, c.spoolObjects, c.spoolBytes} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. It holds the lock while it
// reads, so that scrapes at once wait for one read rather than each
// making its own.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.read != nil && (c.readAt.IsZero() || time.Since(c.readAt) >= c.maxAge) {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		c.merge(c.read(ctx))
		cancel()
		c.readAt = time.Now()
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if n := c.last.Index; n != nil {
		gauge(c.index, float64(n.Patients), "patient")
		gauge(c.index, float64(n.Studies), "study")
		gauge(c.index, float64(n.Series), "series")
		gauge(c.index, float64(n.Instances), "instance")
	}
	for d, q := range c.last.Queues {
		gauge(c.queueTasks, float64(q.Pending), d, "pending")
		gauge(c.queueTasks, float64(q.InFlight), d, "in_flight")
		gauge(c.queueTasks, float64(q.Failed), d, "failed")
		gauge(c.queueOldest, q.OldestPending.Seconds(), d)
	}
	for src, m := range c.last.Migrations {
		gauge(c.migration, float64(m.Pending), src, "pending")
		gauge(c.migration, float64(m.Done), src, "done")
		gauge(c.migration, float64(m.Verified), src, "verified")
		gauge(c.migration, float64(m.Failed), src, "failed")
		gauge(c.migration, float64(m.Conflict), src, "conflict")
	}
	gauge(c.spoolObjects, float64(c.last.Spool.Objects))
	gauge(c.spoolBytes, float64(c.last.Spool.Bytes))
}

// merge takes the fields of s that were read. The caller holds mu.
func (c *stateCollector) merge(s Snapshot) {
	if s.Index != nil {
		n := *s.Index
		c.last.Index = &n
	}
	if s.Queues != nil {
		c.last.Queues = maps.Clone(s.Queues)
	}
	if s.Migrations != nil {
		c.last.Migrations = maps.Clone(s.Migrations)
	}
	if s.Spool != nil {
		b := *s.Spool
		c.last.Spool = &b
	}
}

// update changes the last Snapshot under the lock.
func (c *stateCollector) update(f func(s *Snapshot)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.last)
}
