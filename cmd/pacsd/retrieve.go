package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"iter"
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

// remoteClasses asks the remote which SOP classes the instances to
// retrieve are, by hierarchical C-FINDs in the Study Root model (PS3.4
// C.4.1.3.1.1), in which every level above the one asked holds a single
// UID: at STUDY level, SOP Classes in Study (0008,0062), an optional
// return key, for each study the keys match; for a study whose answer
// lacks it (the remote does not support it), its series at SERIES level
// and their instances' SOP Class UIDs at IMAGE level, series by series.
// A SERIES or IMAGE retrieve asks at IMAGE level under its series.
func remoteClasses(ctx context.Context, aet string, r remote, tlsConfig *tls.Config, ident *dicom.Dataset) ([]string, error) {
	d := &dimse.Dialer{CallingAE: aet, CalledAE: r.ae, Proposals: []dimse.Proposal{
		{AbstractSyntax: uid.StudyRootQueryRetrieveInformationModelFind, TransferSyntaxes: []string{uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian}},
	}}
	a, err := scp.Dial(ctx, d, r.scp(), tlsConfig)
	if err != nil {
		return nil, fmt.Errorf("retrieve: %w", err)
	}
	defer a.Release(context.WithoutCancel(ctx))
	f := &classFinder{ctx: ctx, a: a, seen: map[string]bool{}}
	keys := &dicom.Dataset{}
	for _, e := range ident.Elements {
		if e.Tag != tag.QueryRetrieveLevel {
			keys.Elements = append(keys.Elements, e)
		}
	}
	switch level := strings.ToUpper(ident.First(tag.QueryRetrieveLevel)); level {
	case "PATIENT", "STUDY":
		err = f.studies(keys)
	default:
		study := ident.First(tag.StudyInstanceUID)
		e, _ := ident.Find(tag.SeriesInstanceUID)
		if study == "" || e == nil || len(e.Values) == 0 {
			return nil, fmt.Errorf("retrieve: a %s retrieve names its StudyInstanceUID and SeriesInstanceUID", level)
		}
		for _, series := range e.Values {
			q := &dicom.Dataset{}
			for _, k := range keys.Elements {
				if k.Tag != tag.SeriesInstanceUID {
					q.Elements = append(q.Elements, k)
				}
			}
			q.Elements = append(q.Elements, dicom.Element{Tag: tag.SeriesInstanceUID, VR: "UI", Values: []string{series}})
			if err = f.images(q); err != nil {
				break
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if f.unknown {
		// dcmqrscp, for one, answers neither SOP Classes in Study nor
		// an instance's SOP Class UID.
		f.add(migrate.CommonClasses()...)
	}
	if len(f.out) == 0 {
		return nil, errors.New("retrieve: the remote finds no instances for these keys")
	}
	return f.out, nil
}

// classFinder gathers SOP classes from C-FINDs on one association.
type classFinder struct {
	ctx  context.Context
	a    *dimse.Association
	seen map[string]bool
	out  []string
	// unknown says that the remote found an instance without saying
	// its SOP class.
	unknown bool
}

func (f *classFinder) add(classes ...string) {
	for _, c := range classes {
		if c = strings.TrimSpace(c); c != "" && !f.seen[c] {
			f.seen[c] = true
			f.out = append(f.out, c)
		}
	}
}

// find runs a C-FIND at level with keys and the return keys.
func (f *classFinder) find(level string, keys *dicom.Dataset, returns ...dicom.Element) iter.Seq2[*dicom.Dataset, error] {
	q := &dicom.Dataset{Elements: []dicom.Element{{Tag: tag.QueryRetrieveLevel, VR: "CS", Values: []string{level}}}}
	for _, e := range keys.Elements {
		if e.Tag != tag.PatientID || level == "STUDY" {
			q.Elements = append(q.Elements, e)
		}
	}
	for _, r := range returns {
		if _, ok := q.Find(r.Tag); !ok {
			q.Elements = append(q.Elements, r)
		}
	}
	return f.a.Find(f.ctx, uid.StudyRootQueryRetrieveInformationModelFind, sortedDataset(q))
}

// studies asks for the SOP classes of the studies keys match.
func (f *classFinder) studies(keys *dicom.Dataset) error {
	var lacking []string
	for m, err := range f.find("STUDY", keys, dicom.Element{Tag: tag.StudyInstanceUID, VR: "UI"}, dicom.Element{Tag: tag.SOPClassesInStudy, VR: "UI"}) {
		if err != nil {
			return fmt.Errorf("retrieve: C-FIND of the studies' SOP classes: %w", err)
		}
		e, ok := m.Find(tag.SOPClassesInStudy)
		if !ok || len(slices.DeleteFunc(slices.Clone(e.Values), func(v string) bool { return strings.TrimSpace(v) == "" })) == 0 {
			if st := m.First(tag.StudyInstanceUID); st != "" {
				lacking = append(lacking, st)
			}
			continue
		}
		f.add(e.Values...)
	}
	for _, study := range lacking {
		studyKey := &dicom.Dataset{Elements: []dicom.Element{{Tag: tag.StudyInstanceUID, VR: "UI", Values: []string{study}}}}
		var series []string
		for m, err := range f.find("SERIES", studyKey, dicom.Element{Tag: tag.SeriesInstanceUID, VR: "UI"}) {
			if err != nil {
				return fmt.Errorf("retrieve: C-FIND of the series of %s: %w", study, err)
			}
			if s := m.First(tag.SeriesInstanceUID); s != "" {
				series = append(series, s)
			}
		}
		for _, s := range series {
			q := &dicom.Dataset{Elements: []dicom.Element{
				{Tag: tag.StudyInstanceUID, VR: "UI", Values: []string{study}},
				{Tag: tag.SeriesInstanceUID, VR: "UI", Values: []string{s}},
			}}
			if err := f.images(q); err != nil {
				return err
			}
		}
	}
	return nil
}

// images asks for the SOP classes of the instances of one series.
func (f *classFinder) images(keys *dicom.Dataset) error {
	for m, err := range f.find("IMAGE", keys, dicom.Element{Tag: tag.SOPInstanceUID, VR: "UI"}, dicom.Element{Tag: tag.SOPClassUID, VR: "UI"}) {
		if err != nil {
			return fmt.Errorf("retrieve: C-FIND of the SOP classes of series %s: %w", keys.First(tag.SeriesInstanceUID), err)
		}
		if c := m.First(tag.SOPClassUID); c != "" {
			f.add(c)
		} else if m.First(tag.SOPInstanceUID) != "" {
			f.unknown = true
		}
	}
	return nil
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
