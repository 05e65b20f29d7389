package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pacsd/pacsd/api"
	"github.com/pacsd/pacsd/route"
)

// queueCommand groups the commands of the forwarding queue. They work on
// the index while pacsd serve runs, on this node or another.
type queueCommand struct {
	baseSettings
	storeSettings
	remoteSettings
	routeSettings
	List  queueListCommand  `cmd:"" default:"withargs" help:"List the queue, one line per destination (the default)."`
	Retry queueRetryCommand `cmd:"" help:"Send a destination's pending tasks now, and with --failed its failed ones again."`
	Drop  queueDropCommand  `cmd:"" help:"Forget a study's task for a destination."`
}

// queueListCommand prints the state of each destination's queue.
type queueListCommand struct {
	JSON bool `config:"-" help:"print JSON, as GET /api/queue answers"`
}

// queueRetryCommand retries a destination's tasks.
type queueRetryCommand struct {
	To     string `config:"-" required:"" placeholder:"DEST" help:"the destination"`
	Failed bool   `config:"-" help:"also the failed tasks, and their refused instances"`
}

// queueDropCommand drops a study's task.
type queueDropCommand struct {
	To    string `config:"-" required:"" placeholder:"DEST" help:"the destination"`
	Study string `config:"-" required:"" placeholder:"UID" help:"the Study Instance UID"`
}

// open completes the settings and opens the index's queue; done closes
// it.
func (c *queueCommand) open(ctx context.Context) (q route.Queue, dests []api.Destination, done func(), err error) {
	if err := complete(&c.storeSettings, &c.remoteSettings); err != nil {
		return nil, nil, nil, err
	}
	remotes, err := c.remotes()
	if err != nil {
		return nil, nil, nil, err
	}
	if err := c.routeSettings.complete(remotes); err != nil {
		return nil, nil, nil, err
	}
	db, err := openIndex(ctx, c.Index)
	if err != nil {
		return nil, nil, nil, err
	}
	return db.Outbox(), c.destinationList(remotes), func() { db.Close() }, nil
}

func (c *queueListCommand) Run(ctx context.Context, p *process, queue *queueCommand) error {
	q, dests, done, err := queue.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	r, err := api.Report(ctx, q, dests, time.Now())
	if err != nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(p.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	for _, d := range r.Destinations {
		oldest := time.Duration(d.OldestPendingSeconds * float64(time.Second)).Round(time.Second)
		fmt.Fprintf(p.stdout, "%s pending=%d in_flight=%d failed=%d done_24h=%d oldest_pending=%s\n",
			d.Name, d.Pending, d.InFlight, d.Failed, d.Done24h, oldest)
	}
	return nil
}

func (c *queueRetryCommand) Run(ctx context.Context, p *process, queue *queueCommand) error {
	q, dests, done, err := queue.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	if !known(dests, c.To) {
		return fmt.Errorf("queue retry: %q is neither a remote AE nor a DICOMweb destination", c.To)
	}
	n, err := q.Retry(ctx, c.To, c.Failed)
	if err != nil {
		return err
	}
	fmt.Fprintf(p.stdout, "%s: %d tasks requeued\n", c.To, n)
	return nil
}

func (c *queueDropCommand) Run(ctx context.Context, p *process, queue *queueCommand) error {
	q, _, done, err := queue.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	if err := q.Drop(ctx, c.To, c.Study); err != nil {
		if errors.Is(err, route.ErrNoTask) {
			return fmt.Errorf("queue drop: no task of study %s for %s", c.Study, c.To)
		}
		return err
	}
	fmt.Fprintf(p.stdout, "%s: task of study %s dropped\n", c.To, c.Study)
	return nil
}

func known(dests []api.Destination, name string) bool {
	for _, d := range dests {
		if d.Name == name {
			return true
		}
	}
	return false
}
