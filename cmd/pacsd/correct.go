package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/pacsd/pacsd/api"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/sqlindex"
	"github.com/pacsd/pacsd/storage"
)

// correctCommand groups the commands of corrections. They work on the
// index while pacsd serve runs, which serves the corrected values at
// once; the stored objects never change.
type correctCommand struct {
	baseSettings
	storeSettings
	nhsSettings
	Study correctStudyCommand `cmd:"" help:"Correct a study's patient and study attributes."`
	Move  correctMoveCommand  `cmd:"" help:"Move a series to another study, perhaps another patient's."`
	List  correctListCommand  `cmd:"" help:"List a study's corrections as JSON."`
	Undo  correctUndoCommand  `cmd:"" help:"Revert a correction."`
}

type correctStudyCommand struct {
	Study  string   `arg:"" config:"-" placeholder:"UID" help:"the Study Instance UID"`
	Set    []string `config:"-" sep:"none" placeholder:"KEYWORD=VALUE" help:"an attribute and its new value, by its DICOM keyword (PatientName=Doe^Jane); repeat for each"`
	JSON   string   `name:"json" config:"-" placeholder:"FILE" help:"a DICOM JSON object of the attributes to correct ('-' for standard input), as POST /api/studies/{study}/update takes"`
	Reason string   `config:"-" required:"" placeholder:"TEXT" help:"why"`
}

type correctMoveCommand struct {
	Series string `arg:"" config:"-" placeholder:"UID" help:"the Series Instance UID"`
	To     string `config:"-" required:"" placeholder:"UID" help:"the study it belongs to"`
	Reason string `config:"-" required:"" placeholder:"TEXT" help:"why"`
}

type correctListCommand struct {
	Study string `config:"-" required:"" placeholder:"UID" help:"the Study Instance UID"`
}

type correctUndoCommand struct {
	ID     int64  `arg:"" config:"-" placeholder:"ID" help:"the correction's id, as correct list shows it"`
	Reason string `config:"-" required:"" placeholder:"TEXT" help:"why"`
}

func (c *correctCommand) open(ctx context.Context) (*sqlindex.DB, error) {
	if err := complete(&c.storeSettings, &c.nhsSettings); err != nil {
		return nil, err
	}
	return openIndex(ctx, c.Index, c.indexOptions()...)
}

// openJournal opens the index and the storage of the records of
// corrections: a correction is recorded in storage before the index
// makes it (see archive.Journal).
func (c *correctCommand) openJournal(ctx context.Context, p *process) (*recordsOpened, error) {
	if err := complete(&c.storeSettings, &c.nhsSettings); err != nil {
		return nil, err
	}
	return openJournal(ctx, &c.baseSettings, &c.storeSettings, p, c.indexOptions()...)
}

// parseSets reads KEYWORD=VALUE pairs into a data set.
func parseSets(sets []string) (*dicom.Dataset, error) {
	ds := &dicom.Dataset{}
	for _, s := range sets {
		kw, v, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("--set %q: want KEYWORD=VALUE", s)
		}
		t, ok := tag.ByKeyword(strings.TrimSpace(kw))
		if !ok {
			return nil, fmt.Errorf("--set %q: %q is not a DICOM keyword", s, kw)
		}
		info, _ := tag.Lookup(t)
		if info.VR == "SQ" {
			return nil, fmt.Errorf("--set %q: %s is a sequence; give it with --json", s, kw)
		}
		e := dicom.Element{Tag: t, VR: info.VR}
		if v != "" {
			e.Values = strings.Split(v, `\`)
		}
		ds.Elements = append(ds.Elements, e)
	}
	return ds, nil
}

func (c *correctStudyCommand) Run(ctx context.Context, p *process, cc *correctCommand) error {
	attrs, err := parseSets(c.Set)
	if err != nil {
		return err
	}
	if c.JSON != "" {
		var r io.Reader = os.Stdin
		if c.JSON != "-" {
			f, err := os.Open(c.JSON)
			if err != nil {
				return err
			}
			defer f.Close()
			r = f
		}
		more, _, err := api.ParseCorrection(r)
		if err != nil {
			return err
		}
		attrs = index.Overlay(more, attrs)
	}
	o, err := cc.openJournal(ctx, p)
	if err != nil {
		return err
	}
	defer o.close()
	rec, err := o.journal.Correct(ctx, &index.Correction{Study: c.Study, After: attrs, Reason: c.Reason, Principal: cliPrincipal(p)})
	if err != nil {
		return err
	}
	return corrected(ctx, p.stdout, o.db, rec)
}

func (c *correctMoveCommand) Run(ctx context.Context, p *process, cc *correctCommand) error {
	o, err := cc.openJournal(ctx, p)
	if err != nil {
		return err
	}
	defer o.close()
	rec, err := o.journal.MoveSeries(ctx, &index.Correction{Series: c.Series, Target: c.To, Reason: c.Reason, Principal: cliPrincipal(p)})
	if err != nil {
		return err
	}
	return corrected(ctx, p.stdout, o.db, rec)
}

func (c *correctListCommand) Run(ctx context.Context, p *process, cc *correctCommand) error {
	db, err := cc.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	list, err := db.Corrections(ctx, c.Study)
	if err != nil {
		return err
	}
	out := []api.CorrectionView{}
	for _, rec := range list {
		v, err := api.CorrectionOf(rec)
		if err != nil {
			return err
		}
		out = append(out, v)
	}
	enc := json.NewEncoder(p.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func (c *correctUndoCommand) Run(ctx context.Context, p *process, cc *correctCommand) error {
	o, err := cc.openJournal(ctx, p)
	if err != nil {
		return err
	}
	defer o.close()
	rec, err := o.journal.Undo(ctx, c.ID, c.Reason, cliPrincipal(p))
	if err != nil {
		return err
	}
	return corrected(ctx, p.stdout, o.db, rec)
}

// corrected prints a correction made and queues what it changed again
// for the destinations that had it, as the API does: pacsd serve, on the
// same index, sends it. The destinations are those the queue knows.
func corrected(ctx context.Context, w io.Writer, db *sqlindex.DB, rec *index.Correction) error {
	if err := printCorrection(w, rec); err != nil {
		return err
	}
	q := db.Outbox()
	stats, err := q.Stats(ctx)
	if err != nil {
		return fmt.Errorf("correction %d recorded, but not queued again for the destinations that had it: %w", rec.ID, err)
	}
	names := make([]string, len(stats))
	for i, st := range stats {
		names[i] = st.Destination
	}
	dests, n, err := api.Resend(ctx, q, db, names, rec)
	if err != nil {
		return fmt.Errorf("correction %d recorded, but not queued again for the destinations that had it: %w", rec.ID, err)
	}
	if len(dests) > 0 {
		_, err = fmt.Fprintf(w, "queued %d instances again for %s, which had the study\n", n, strings.Join(dests, ", "))
	}
	return err
}

func printCorrection(w io.Writer, rec *index.Correction) error {
	v, err := api.CorrectionOf(rec)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "correction %s recorded: %s\n", strconv.FormatInt(v.ID, 10), v.After)
	return err
}

// originals gives the API the objects of instances as received, read
// through the guarded archive so that each is audited as the front
// doors' reads are.
type originals struct {
	db   *sqlindex.DB
	arch guardedArchive
}

func (o originals) Instance(ctx context.Context, sop string) (*index.Instance, error) {
	return o.db.Instance(ctx, sop)
}

func (o originals) Open(ctx context.Context, in *index.Instance) (storage.Object, error) {
	return o.arch.OpenOriginal(ctx, in)
}
