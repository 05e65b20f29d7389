package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/pacsd/pacsd/archive"
)

// reindexCommand rebuilds the index from the objects in storage: after the
// loss of the index, or to move it to another database. It takes serve's
// flags, of which it uses --storage, --index and --data, and reads storage
// only: with a spool, the spool's objects are read where they are and left
// for pacsd serve to upload. Run it while pacsd serve is stopped, or
// objects stored meanwhile may be missed.
func reindexCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, store, db, done, err := openMaintenance(ctx, "reindex", args, getenv, stderr)
	if err != nil {
		return err
	}
	defer done()

	fmt.Fprintf(stdout, "reindexing the objects of %s\n", cfg.Storage)
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
