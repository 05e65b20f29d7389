package main

import (
	"context"
	"fmt"
	"time"

	"github.com/pacsd/pacsd/archive"
)

// verifyCommand compares the index with storage and prints every
// disagreement, one line each: instances whose objects are missing,
// objects no index record points to, and objects whose size or SHA-256
// differs from the index's. It returns an error, so that pacsd exits
// non-zero, if there is any. It only reads. Run it on a quiet archive:
// objects stored or deleted meanwhile may be reported.
type verifyCommand struct {
	maintenanceSettings
}

func (c *verifyCommand) Run(ctx context.Context, p *process) error {
	store, db, done, err := c.open(ctx, p)
	if err != nil {
		return err
	}
	defer done()
	stdout := p.stdout

	res, err := archive.Verify(ctx, store, db, func(p archive.Problem) { fmt.Fprintln(stdout, p) })
	fmt.Fprintf(stdout, "verified %d objects (%.1f MiB) and %d index records in %v: %d problems\n",
		res.Objects, float64(res.Bytes)/(1<<20), res.Records, res.Elapsed.Round(time.Millisecond), res.Problems)
	if err != nil {
		return err
	}
	if res.Problems > 0 {
		return fmt.Errorf("verify: %d problems between the index and storage", res.Problems)
	}
	return nil
}
