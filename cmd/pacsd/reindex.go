package main

import (
	"context"
	"fmt"
	"time"

	"github.com/pacsd/pacsd/archive"
)

// reindexCommand rebuilds the index from the objects in storage: after the
// loss of the index, or to move it to another database. The records in
// storage of deletions, restores, corrections and links by hand, and of
// the issuers given at ingest, are replayed too (see archive.Record). It reads storage
// only: with a spool, the spool's objects are read where they are and left
// for pacsd serve to upload. Run it while pacsd serve is stopped, or
// objects stored meanwhile may be missed.
type reindexCommand struct {
	maintenanceSettings
	nhsSettings
}

func (c *reindexCommand) Run(ctx context.Context, proc *process) error {
	if err := c.nhsSettings.complete(); err != nil {
		return err
	}
	// The NHS issuers decide which rebuilt patients are linked by NHS
	// number, as serve's decided when the instances arrived.
	store, db, done, err := c.open(ctx, proc, c.indexOptions()...)
	if err != nil {
		return err
	}
	defer done()
	stdout, stderr := proc.stdout, proc.stderr

	fmt.Fprintf(stdout, "reindexing the objects of %s\n", c.Storage)
	var last time.Time
	p, err := archive.Reindex(ctx, store, db, func(p archive.Progress) {
		if p.Err != nil {
			fmt.Fprintf(stderr, "pacsd reindex: %v\n", p.Err)
		}
		if time.Since(last) >= time.Second {
			last = time.Now()
			fmt.Fprintf(stdout, "%s so far\n", reindexSummary(p))
		}
	})
	fmt.Fprintln(stdout, reindexSummary(p))
	if p.Records > 0 || p.Refused > 0 {
		fmt.Fprintf(stdout, "replayed %d records of deletions, restores, corrections and links; %d refused\n", p.Records, p.Refused)
	}
	if p.Superseded > 0 {
		fmt.Fprintf(stdout, "%d objects hold earlier versions of instances indexed with a later one; pacsd verify reports them as orphans, and verify --repair deletes them\n", p.Superseded)
	}
	if err != nil {
		return err
	}
	if p.Failed > 0 {
		return fmt.Errorf("reindex: %d objects could not be indexed", p.Failed)
	}
	return nil
}

// reindexSummary says how far a reindex got and how fast.
func reindexSummary(p archive.Progress) string {
	secs := max(p.Elapsed.Seconds(), 1e-3)
	return fmt.Sprintf("indexed %d objects, %d failed, %.1f MiB in %v: %.0f objects/s, %.1f MiB/s",
		p.Objects, p.Failed, float64(p.Bytes)/(1<<20), p.Elapsed.Round(time.Millisecond),
		float64(p.Objects+p.Failed)/secs, float64(p.Bytes)/(1<<20)/secs)
}
