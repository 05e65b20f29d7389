package main

import (
	"context"
	"fmt"

	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/route"
)

// sendCommand queues a study, or one of its series, for destinations: a
// running pacsd serve sends it.
type sendCommand struct {
	baseSettings
	storeSettings
	remoteSettings
	routeSettings
	To     []string `config:"-" required:"" placeholder:"DEST" help:"a destination, remote AE or DICOMweb; repeat for each"`
	Study  string   `config:"-" required:"" placeholder:"UID" help:"the Study Instance UID"`
	Series string   `config:"-" placeholder:"UID" help:"only this series of the study"`
}

func (c *sendCommand) Run(ctx context.Context, p *process) error {
	if err := complete(&c.storeSettings, &c.remoteSettings); err != nil {
		return err
	}
	remotes, err := c.remotes()
	if err != nil {
		return err
	}
	if err := c.routeSettings.complete(remotes); err != nil {
		return err
	}
	dests := c.destinationList(remotes)
	c.To = trimList(c.To)
	for _, d := range c.To {
		if !known(dests, d) {
			return fmt.Errorf("send: %q is neither a remote AE nor a DICOMweb destination", d)
		}
	}
	for _, u := range []string{c.Study, c.Series} {
		if u == "" {
			continue
		}
		if err := uid.Valid(u); err != nil {
			return fmt.Errorf("send: %w", err)
		}
	}
	db, err := openIndex(ctx, c.Index)
	if err != nil {
		return err
	}
	defer db.Close()
	n, err := route.Send(ctx, db.Outbox(), db, c.Study, c.Series, c.To)
	if err != nil {
		return err
	}
	fmt.Fprintf(p.stdout, "queued %d instances of study %s for %v\n", n, c.Study, c.To)
	return nil
}
