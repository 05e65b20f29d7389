package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/migrate"
	"github.com/pacsd/pacsd/scp"
)

// retrieveCommand pulls instances from a remote archive into this one:
// with C-GET (the default) the instances come back on pacsd's own
// association and are archived by this process; with --move the remote is
// asked to C-MOVE them to pacsd's AE title, which a running pacsd serve
// must receive. It is the building block of migrating a trust's archive.
type retrieveCommand struct {
	baseSettings
	storeSettings
	archiveSettings
	remoteSettings
	tlsSettings
	From  string   `config:"-" required:"" placeholder:"AET" help:"the remote AE to retrieve from (one of --remote-ae)"`
	Level string   `config:"-" default:"STUDY" placeholder:"LEVEL" help:"Query/Retrieve level: PATIENT, STUDY, SERIES or IMAGE"`
	Keys  []string `name:"key" config:"-" sep:"none" placeholder:"KEYWORD=VALUE" help:"a unique key of the retrieve, e.g. StudyInstanceUID=1.2.3; repeat for each, and for each level above too"`
	Move  bool     `config:"-" help:"ask the remote to C-MOVE to this pacsd's AE title instead of using C-GET"`
}

func (c *retrieveCommand) Run(ctx context.Context, p *process) error {
	if err := complete(&c.storeSettings, &c.archiveSettings, &c.remoteSettings, &c.tlsSettings); err != nil {
		return err
	}
	tlsCfg, err := c.tlsSettings.load(false)
	if err != nil {
		return err
	}
	remotes, err := c.remotes()
	if err != nil {
		return err
	}
	r, ok := remotes[c.From]
	if !ok {
		return fmt.Errorf("retrieve: --from %q is not among the remote AEs (--remote-ae)", c.From)
	}
	ident, err := retrieveIdentifier(c.Level, c.Keys)
	if err != nil {
		return err
	}
	log, err := c.logger(p.stderr)
	if err != nil {
		return err
	}
	aet := c.AETitle
	model := uid.StudyRootQueryRetrieveInformationModelGet
	if c.Move {
		model = uid.StudyRootQueryRetrieveInformationModelMove
	}
	if strings.EqualFold(c.Level, "PATIENT") {
		model = uid.PatientRootQueryRetrieveInformationModelGet
		if c.Move {
			model = uid.PatientRootQueryRetrieveInformationModelMove
		}
	}
	progress := func(s dimse.SubOperations) {
		fmt.Fprintf(p.stdout, "remaining %d, completed %d, failed %d, warning %d\n", s.Remaining, s.Completed, s.Failed, s.Warning)
	}
	start := time.Now()
	var subs dimse.SubOperations
	if c.Move {
		d := &dimse.Dialer{CallingAE: aet, CalledAE: r.ae, Logger: log, Proposals: []dimse.Proposal{
			{AbstractSyntax: model, TransferSyntaxes: []string{uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian}},
		}}
		a, err := scp.Dial(ctx, d, r.scp(), tlsCfg.client)
		if err != nil {
			return fmt.Errorf("retrieve: %w", err)
		}
		defer a.Release(context.WithoutCancel(ctx))
		subs, err = a.Move(ctx, model, aet, ident, progress)
		if err != nil && subs.Completed+subs.Warning == 0 {
			return fmt.Errorf("retrieve: C-MOVE: %w (%d completed, %d failed)", err, subs.Completed, subs.Failed)
		}
	} else {
		subs, err = c.getInto(ctx, p, log, r, tlsCfg.client, model, ident, progress)
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(p.stdout, "retrieved %d instances (%d failed, %d with warnings) from %s in %v\n",
		subs.Completed+subs.Warning, subs.Failed, subs.Warning, r.ae, time.Since(start).Round(time.Millisecond))
	if subs.Failed > 0 {
		return fmt.Errorf("retrieve: %d sub-operations failed", subs.Failed)
	}
	return nil
}

// getInto runs a C-GET whose sub-operations are archived here. The storage
// SOP classes to propose are learnt first with a C-FIND at IMAGE level: an
// association holds only 128 presentation contexts, fewer than there are
// storage classes.
func (c *retrieveCommand) getInto(ctx context.Context, p *process, log *slog.Logger, r remote, tlsConfig *tls.Config, model string, ident *dicom.Dataset, progress func(dimse.SubOperations)) (dimse.SubOperations, error) {
	aet := c.AETitle
	store, closeStore, err := openStorage(ctx, &c.storeSettings, c.s3Env(p.getenv), log)
	if err != nil {
		return dimse.SubOperations{}, err
	}
	defer func() {
		// Uploads a spool has not finished in this time resume when
		// pacsd next starts on it.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := closeStore(cctx); err != nil {
			log.Warn("storage not closed cleanly", "err", err)
		}
	}()
	db, err := openIndex(ctx, c.Index)
	if err != nil {
		return dimse.SubOperations{}, err
	}
	defer db.Close()
	dup, err := archive.ParseDuplicatePolicy(c.Duplicates)
	if err != nil {
		return dimse.SubOperations{}, err
	}
	arch := archive.New(archive.Config{Store: store, Index: db, AETitle: aet, Duplicates: dup, Logger: log})

	classes, err := remoteClasses(ctx, aet, r, tlsConfig, ident)
	if err != nil {
		return dimse.SubOperations{}, err
	}
	// The remote chooses one transfer syntax per context, and should be
	// able to send each instance as it stores it: a context per SOP
	// class and transfer syntax, as far as 128 contexts go.
	props := migrate.StorageProposals(classes, dimse.Proposal{AbstractSyntax: model, TransferSyntaxes: []string{uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian}})
	d := &dimse.Dialer{CallingAE: aet, CalledAE: r.ae, Proposals: props, Store: &scp.Service{Archive: arch, Logger: log}, Logger: log}
	a, err := scp.Dial(ctx, d, r.scp(), tlsConfig)
	if err != nil {
		return dimse.SubOperations{}, fmt.Errorf("retrieve: %w", err)
	}
	defer a.Release(context.WithoutCancel(ctx))
	subs, err := a.Get(ctx, model, ident, progress)
	if err != nil && subs.Completed+subs.Warning == 0 {
		return subs, fmt.Errorf("retrieve: C-GET: %w (%d completed, %d failed)", err, subs.Completed, subs.Failed)
	}
	return subs, nil
}

// remoteClasses asks the remote, with a C-FIND at IMAGE level below the
// retrieve's keys, which SOP classes the instances are.
func remoteClasses(ctx context.Context, aet string, r remote, tlsConfig *tls.Config, ident *dicom.Dataset) ([]string, error) {
	d := &dimse.Dialer{CallingAE: aet, CalledAE: r.ae, Proposals: []dimse.Proposal{
		{AbstractSyntax: uid.StudyRootQueryRetrieveInformationModelFind, TransferSyntaxes: []string{uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian}},
	}}
	a, err := scp.Dial(ctx, d, r.scp(), tlsConfig)
	if err != nil {
		return nil, fmt.Errorf("retrieve: %w", err)
	}
	defer a.Release(context.WithoutCancel(ctx))
	q := &dicom.Dataset{}
	for _, e := range ident.Elements {
		if e.Tag != tag.QueryRetrieveLevel && e.Tag != tag.PatientID {
			q.Elements = append(q.Elements, e)
		}
	}
	q.Elements = append(q.Elements,
		dicom.Element{Tag: tag.QueryRetrieveLevel, VR: "CS", Values: []string{"IMAGE"}},
		dicom.Element{Tag: tag.SOPClassUID, VR: "UI"})
	if _, ok := q.Find(tag.SeriesInstanceUID); !ok {
		q.Elements = append(q.Elements, dicom.Element{Tag: tag.SeriesInstanceUID, VR: "UI"})
	}
	if _, ok := q.Find(tag.SOPInstanceUID); !ok {
		q.Elements = append(q.Elements, dicom.Element{Tag: tag.SOPInstanceUID, VR: "UI"})
	}
	seen := map[string]bool{}
	var out []string
	for m, err := range a.Find(ctx, uid.StudyRootQueryRetrieveInformationModelFind, sortedDataset(q)) {
		if err != nil {
			return nil, fmt.Errorf("retrieve: C-FIND for the SOP classes: %w", err)
		}
		if c := m.First(tag.SOPClassUID); c != "" && !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("retrieve: the remote finds no instances for these keys")
	}
	return out, nil
}

// retrieveIdentifier builds a retrieve identifier from KEY=VALUE pairs.
func retrieveIdentifier(level string, keys []string) (*dicom.Dataset, error) {
	ds := &dicom.Dataset{Elements: []dicom.Element{{Tag: tag.QueryRetrieveLevel, VR: "CS", Values: []string{strings.ToUpper(level)}}}}
	for _, k := range keys {
		name, v, ok := strings.Cut(k, "=")
		if !ok {
			return nil, fmt.Errorf("retrieve: --key %q is not KEYWORD=VALUE", k)
		}
		t, err := tag.Parse(name)
		if err != nil {
			return nil, fmt.Errorf("retrieve: --key %q: %w", k, err)
		}
		info, _ := tag.Lookup(t)
		ds.Elements = append(ds.Elements, dicom.Element{Tag: t, VR: info.VR, Values: strings.Split(v, `\`)})
	}
	return sortedDataset(ds), nil
}

func sortedDataset(ds *dicom.Dataset) *dicom.Dataset {
	slices.SortStableFunc(ds.Elements, func(a, b dicom.Element) int { return cmp.Compare(a.Tag, b.Tag) })
	return ds
}

// scp returns r as package scp names a remote.
func (r remote) scp() scp.Remote { return scp.Remote{AETitle: r.ae, Addr: r.addr, TLS: r.tls} }
