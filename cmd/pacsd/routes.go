package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/route"
)

// routesCommand groups the commands about the forwarding rules.
type routesCommand struct {
	Test routesTestCommand `cmd:"" help:"Print which routes each file would take, and when it would be sent (a dry run)."`
}

// routesTestCommand matches files against the routes of the settings.
type routesTestCommand struct {
	baseSettings
	archiveSettings
	remoteSettings
	routeSettings
	CallingAE string   `name:"calling-ae" config:"-" placeholder:"AET" help:"the calling AE title the files are taken to come from (default: the Source AE title of their File Meta Information)"`
	CalledAE  string   `name:"called-ae" config:"-" placeholder:"AET" help:"the called AE title they are taken to be sent to (default: the AE title)"`
	Source    string   `config:"-" default:"dimse" placeholder:"SOURCE" help:"how they are taken to come in: dimse, stow, migrate or import"`
	Files     []string `arg:"" name:"FILE" help:"Part-10 files"`
}

func (c *routesTestCommand) Run(ctx context.Context, p *process) error {
	if err := complete(&c.archiveSettings, &c.remoteSettings); err != nil {
		return err
	}
	remotes, err := c.remotes()
	if err != nil {
		return err
	}
	if err := c.routeSettings.complete(remotes); err != nil {
		return err
	}
	if c.CalledAE == "" {
		c.CalledAE = c.AETitle
	}
	now := time.Now()
	failed := 0
	for _, path := range c.Files {
		facts, err := readFacts(path)
		if err != nil {
			fmt.Fprintf(p.stdout, "%s: %v\n", path, err)
			failed++
			continue
		}
		if c.CallingAE != "" {
			facts.CallingAE = c.CallingAE
		}
		facts.CalledAE, facts.Source = c.CalledAE, c.Source
		targets := c.rules.Match(facts, now)
		if len(targets) == 0 {
			fmt.Fprintf(p.stdout, "%s: no route (calling_ae %q, called_ae %q, source %s)\n", path, facts.CallingAE, facts.CalledAE, facts.Source)
			continue
		}
		fmt.Fprintf(p.stdout, "%s:\n", path)
		for _, t := range targets {
			when := "at once"
			if wait := t.Due.Sub(now).Round(time.Second); wait > 0 {
				when = "in " + wait.String()
			}
			window := ""
			if !t.Window.IsZero() {
				window = ", window " + t.Window.String()
			}
			if profile, allowBurnedIn := c.rules.Deidentify(t.Destination); profile != "" {
				window += ", de-identified (" + profile + ")"
				if allowBurnedIn {
					window += " with burned-in annotation"
				}
			}
			fmt.Fprintf(p.stdout, "  %s %s, priority %s%s (routes: %s)\n", t.Destination, when, t.Priority, window, strings.Join(t.Routes, ", "))
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d files could not be read", failed, len(c.Files))
	}
	return nil
}

// readFacts reads the header of a Part-10 file: the facts routes match
// on, but for how it would come in.
func readFacts(path string) (*route.Facts, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	meta, _, err := dicom.ReadFileMeta(br)
	if err != nil {
		return nil, err
	}
	ts, ok := uid.LookupTransferSyntax(meta.TransferSyntaxUID)
	if !ok {
		return nil, fmt.Errorf("transfer syntax %q is unknown", meta.TransferSyntaxUID)
	}
	sc := dicom.NewScanner(br, ts, dicom.Limits{})
	defer sc.Close()
	if _, err := sc.Identify(); err != nil {
		return nil, err
	}
	if _, err := io.Copy(io.Discard, sc.Rest()); err != nil {
		return nil, err
	}
	h := sc.Header()
	if h.Err != nil && !errors.Is(h.Err, dicom.ErrTruncated) {
		return nil, h.Err
	}
	return &route.Facts{CallingAE: meta.SourceApplicationEntityTitle, Header: h.Dataset}, nil
}
