package metrics

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// gather returns the metric families of r by name, without HTTP, so that
// it runs inside a synctest bubble.
func gather(t *testing.T, r *Registry) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := r.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// TestReadAtScrape checks that the gauges of the archive's state are read
// when scraped, at most once per maxAge, that a field that could not be
// read keeps its last value, and that a destination no longer read is no
// longer reported.
func TestReadAtScrape(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := New(Config{})
		var reads atomic.Int64
		var pending atomic.Int64
		var failIndex atomic.Bool
		pending.Store(3)
		r.ReadAtScrape(func(ctx context.Context) Snapshot {
			if _, ok := ctx.Deadline(); !ok {
				t.Error("read without a deadline")
			}
			reads.Add(1)
			s := Snapshot{
				Queues:     map[string]QueueState{"REPORTING": {Pending: int(pending.Load()), OldestPending: time.Minute}},
				Migrations: map[string]MigrationState{"OLDPACS": {Pending: 10, Verified: int(pending.Load())}},
				Spool:      &SpoolBacklog{Objects: int(pending.Load()), Bytes: 100},
			}
			if pending.Load() > 3 {
				s.Queues["OTHER"] = QueueState{Failed: 1}
			}
			if !failIndex.Load() {
				s.Index = &IndexCounts{Studies: int(pending.Load())}
			}
			return s
		}, time.Second, 5*time.Second)

		expect(t, gather(t, r), []series{
			{"pacsd_queue_tasks", l("destination", "REPORTING", "state", "pending"), 3},
			{"pacsd_queue_oldest_pending_seconds", l("destination", "REPORTING"), 60},
			{"pacsd_migration_studies", l("source", "OLDPACS", "state", "verified"), 3},
			{"pacsd_spool_backlog_objects", l(), 3},
			{"pacsd_index_entities", l("level", "study"), 3},
		})

		// Within maxAge a scrape is served what was read.
		pending.Store(7)
		time.Sleep(500 * time.Millisecond)
		expect(t, gather(t, r), []series{{"pacsd_queue_tasks", l("destination", "REPORTING", "state", "pending"), 3}})
		if n := reads.Load(); n != 1 {
			t.Errorf("%d reads for two scrapes within maxAge, want 1", n)
		}

		// After it, the next scrape reads again.
		failIndex.Store(true)
		time.Sleep(500 * time.Millisecond)
		mfs := gather(t, r)
		expect(t, mfs, []series{
			{"pacsd_queue_tasks", l("destination", "REPORTING", "state", "pending"), 7},
			{"pacsd_queue_tasks", l("destination", "OTHER", "state", "failed"), 1},
			{"pacsd_migration_studies", l("source", "OLDPACS", "state", "verified"), 7},
			{"pacsd_spool_backlog_objects", l(), 7},
			// Not read this time: the last count stands.
			{"pacsd_index_entities", l("level", "study"), 3},
		})
		if n := reads.Load(); n != 2 {
			t.Errorf("%d reads, want 2", n)
		}

		pending.Store(2)
		time.Sleep(time.Second)
		if got := len(gather(t, r)["pacsd_queue_oldest_pending_seconds"].GetMetric()); got != 1 {
			t.Errorf("%d destinations reported after OTHER was no longer read, want 1", got)
		}
	})
}
