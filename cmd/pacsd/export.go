package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/pacsd/pacsd/archive"
	auditlog "github.com/pacsd/pacsd/audit"
	"github.com/pacsd/pacsd/deid"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/sqlindex"
)

// exportCommand writes a study's instances as Part-10 files into a
// directory, as archived or de-identified.
type exportCommand struct {
	baseSettings
	storeSettings
	deidSettings
	Study      string `config:"-" required:"" placeholder:"UID" help:"the Study Instance UID"`
	To         string `config:"-" required:"" placeholder:"DIR" help:"directory the files are written to, one per instance, named by SOP Instance UID (created if need be)"`
	Deidentify string `config:"-" placeholder:"PROFILE" help:"de-identify the copies: basic (PS3.15 Annex E Basic Application Level Confidentiality Profile, with Retain Longitudinal Temporal Information with Modified Dates and Clean Descriptors); needs --deid-key. Instances with burned-in annotation are left out"`
}

func (c *exportCommand) Run(ctx context.Context, p *process) error {
	if err := complete(&c.storeSettings); err != nil {
		return err
	}
	if err := uid.Valid(c.Study); err != nil {
		return &usageError{fmt.Errorf("export: study: %w", err), "pacsd export -h"}
	}
	switch c.Deidentify {
	case "", "basic":
	default:
		return &usageError{fmt.Errorf("export: --deidentify %q: the profile pacsd applies is basic", c.Deidentify), "pacsd export -h"}
	}
	log, err := c.logger(p.stderr)
	if err != nil {
		return err
	}
	store, closeStore, err := openStorage(ctx, &c.storeSettings, c.s3Env(p.getenv), log)
	if err != nil {
		return err
	}
	defer closeStore(context.WithoutCancel(ctx))
	db, err := openIndex(ctx, c.Index)
	if err != nil {
		return err
	}
	defer db.Close()
	arch := archive.New(archive.Config{Store: store, Index: db, Logger: log.With("component", "archive")})

	var d *deid.Deidentifier
	if c.Deidentify != "" {
		key, err := c.deidSettings.key(log)
		if err != nil {
			return err
		}
		if key == nil {
			return &usageError{errors.New("export: --deidentify needs --deid-key, the project key that keeps pseudonyms the same across exports"), "pacsd export -h"}
		}
		// The index keeps the mapping, for re-identification by an
		// admin.
		if d, err = deid.New(deid.Options{Key: key, Mapping: db}); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(c.To, 0o750); err != nil {
		return fmt.Errorf("export: %w", err)
	}

	// What was read reaches the audit trail through the index, which
	// pacsd serve, the one writer of the trail, drains (runExportAudit):
	// whether or not the export succeeds, once it has read anything.
	dir, err := filepath.Abs(c.To)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	rec := &index.Export{Principal: cliPrincipal(p), Study: c.Study, Destination: dir, Deidentified: d != nil, SOPClasses: map[string]int{}}
	written, burnedIn, err := c.export(ctx, arch, db, d, rec, log)
	if rec.Instances > 0 || err != nil && !errors.Is(err, index.ErrNotFound) {
		if err != nil {
			rec.Failure = err.Error()
		}
		if aerr := db.RecordExport(context.WithoutCancel(ctx), rec); aerr != nil {
			return errors.Join(err, fmt.Errorf("export: record it for the audit trail: %w", aerr))
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(p.stdout, "exported %d instances of study %s to %s\n", written, c.Study, c.To)
	if burnedIn > 0 {
		return fmt.Errorf("export: %d instances with burned-in annotation (0028,0301 YES) left out: their pixels may show who the patient is", burnedIn)
	}
	return nil
}

// export writes the study's instances, counting those written in rec.
func (c *exportCommand) export(ctx context.Context, arch *archive.Service, db *sqlindex.DB, d *deid.Deidentifier, rec *index.Export, log *slog.Logger) (written, burnedIn int, err error) {
	ident := &dicom.Dataset{Elements: []dicom.Element{{Tag: tag.StudyInstanceUID, VR: "UI", Values: []string{c.Study}}}}
	for in, err := range db.FindInstances(ctx, &index.Query{Level: index.ImageLevel, Identifier: ident}) {
		if err != nil {
			return written, burnedIn, fmt.Errorf("export: find the instances of %s: %w", c.Study, err)
		}
		err := exportInstance(ctx, arch, d, in, c.To)
		switch {
		case errors.Is(err, deid.ErrBurnedIn):
			burnedIn++
			log.Warn("instance with burned-in annotation left out of the de-identified export", "sop_instance_uid", in.SOPInstanceUID)
		case err != nil:
			return written, burnedIn, fmt.Errorf("export: %s: %w", in.SOPInstanceUID, err)
		default:
			written++
			rec.Instances++
			rec.SOPClasses[in.SOPClassUID]++
		}
	}
	if written+burnedIn == 0 {
		return 0, 0, fmt.Errorf("export: study %s: %w", c.Study, index.ErrNotFound)
	}
	return written, burnedIn, nil
}

// exportLog is the index's record of exports not yet in the audit trail.
type exportLog interface {
	UnauditedExports(ctx context.Context, limit int) ([]*index.Export, error)
	MarkExportsAudited(ctx context.Context, ids []int64) error
	StudyPatient(ctx context.Context, study string) (*index.Patient, error)
}

// runExportAudit writes the studies pacsd export read, in any process, to
// the audit trail until ctx ends, as runCorrectionAudit does corrections:
// DICOM Instances Transferred, from pacsd to the directory, at the
// request of whoever ran it.
func runExportAudit(ctx context.Context, exports exportLog, trail *auditlog.Trail, log *slog.Logger) {
	drainToAudit(ctx, "exports", exports.UnauditedExports, exports.MarkExportsAudited, func(e *index.Export) int64 {
		var patient auditlog.Patient
		if p, err := exports.StudyPatient(ctx, e.Study); err == nil {
			patient = auditlog.Patient{ID: p.PatientID, Issuer: p.IssuerOfPatientID}
			if p.Attributes != nil {
				patient.Name = p.Attributes.String(tag.PatientName)
			}
		}
		var failed error
		if e.Failure != "" {
			failed = errors.New(e.Failure)
		}
		dest := "file://" + filepath.ToSlash(e.Destination)
		if e.Deidentified {
			dest += " (de-identified)"
		}
		trail.Sent(auditlog.Actor{User: e.Principal}, auditlog.Actor{User: dest}, failed, patient, auditlog.Study{UID: e.Study, SOPClasses: e.SOPClasses})
		return e.ID
	}, log)
}

// exportInstance writes one instance into dir, as archived, or
// de-identified by d when d is not nil. The file appears whole or not at
// all: it is written under a temporary name, synced, then renamed.
func exportInstance(ctx context.Context, arch *archive.Service, d *deid.Deidentifier, in *index.Instance, dir string) (err error) {
	fm, rc, err := arch.OpenDataset(ctx, in, in.TransferSyntaxUID)
	if err != nil {
		return err
	}
	defer rc.Close()
	ts, ok := uid.LookupTransferSyntax(in.TransferSyntaxUID)
	if !ok {
		return fmt.Errorf("transfer syntax %q is unknown", in.TransferSyntaxUID)
	}
	sop := in.SOPInstanceUID
	if d != nil {
		// The new UID is a function of the old under the project key.
		sop = d.UID(sop)
	}
	meta := dicom.FileMeta{
		MediaStorageSOPClassUID:      in.SOPClassUID,
		MediaStorageSOPInstanceUID:   sop,
		TransferSyntaxUID:            ts.UID,
		ImplementationClassUID:       dicom.ImplementationClassUID,
		ImplementationVersionName:    dicom.ImplementationVersionName,
		SourceApplicationEntityTitle: fm.SourceApplicationEntityTitle,
	}
	f, err := os.CreateTemp(dir, ".export-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	w := bufio.NewWriterSize(f, 256<<10)
	if _, err := w.Write(dicom.AppendFileMeta(nil, meta)); err != nil {
		return err
	}
	if d == nil {
		if _, err := io.Copy(w, rc); err != nil {
			return err
		}
	} else {
		res, err := d.Rewrite(ctx, w, rc, ts)
		if err != nil {
			return err
		}
		if res.Replaced.SOPInstanceUID != sop {
			return fmt.Errorf("de-identified as %s, not %s", res.Replaced.SOPInstanceUID, sop)
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(dir, sop+".dcm"))
}
