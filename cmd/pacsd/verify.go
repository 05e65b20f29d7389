package main

import (
	"context"
	"fmt"
	"time"

	"github.com/pacsd/pacsd/archive"
)

// repairMinAge is how old an orphan must be for verify --repair to touch
// it: a younger one may belong to a store that has not recorded it yet.
// It is well above archive.DefaultCommitTimeout.
const repairMinAge = 10 * time.Minute

// verifyCommand compares the index with storage and prints every
// disagreement, one line each: instances whose objects are missing,
// objects no index record points to (orphans), and objects whose size or
// SHA-256 differs from the index's. It returns an error, so that pacsd
// exits non-zero, if there is any. It only reads, unless --repair is
// given: then it repairs the orphans as archive.Repair does (deleting
// those of instances indexed with another object, indexing those of
// instances the index does not know), prints what it did with each, and
// exits non-zero only for the problems left. Run it on a quiet archive:
// objects stored or deleted meanwhile may be reported.
type verifyCommand struct {
	maintenanceSettings
	nhsSettings
	Repair bool `config:"-" help:"repair orphans: delete the objects of instances indexed with another object, index the objects of instances the index lacks (objects written in the last 10 minutes are left alone)"`
}

func (c *verifyCommand) Run(ctx context.Context, p *process) error {
	if err := c.nhsSettings.complete(); err != nil {
		return err
	}
	store, db, done, err := c.openFor(ctx, p, c.Repair, c.indexOptions()...)
	if err != nil {
		return err
	}
	defer done()
	stdout := p.stdout

	var problems []archive.Problem
	res, err := archive.Verify(ctx, store, db, func(p archive.Problem) {
		problems = append(problems, p)
		fmt.Fprintln(stdout, p)
	})
	fmt.Fprintf(stdout, "verified %d objects (%.1f MiB) and %d index records in %v: %d problems\n",
		res.Objects, float64(res.Bytes)/(1<<20), res.Records, res.Elapsed.Round(time.Millisecond), res.Problems)
	if err != nil {
		return err
	}
	left := res.Problems
	if c.Repair && left > 0 {
		err := archive.Repair(ctx, store, db, problems, repairMinAge, func(p archive.Problem, r archive.Repaired) {
			fmt.Fprintf(stdout, "repair: %-7s %s\n", r, p.Key)
			if r != archive.Left {
				left--
			}
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "repaired %d problems, %d left\n", res.Problems-left, left)
	}
	if left > 0 {
		return fmt.Errorf("verify: %d problems between the index and storage", left)
	}
	return nil
}
