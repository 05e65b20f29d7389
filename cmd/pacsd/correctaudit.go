package main

import (
	"context"
	"log/slog"

	auditlog "github.com/pacsd/pacsd/audit"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
)

// correctionLog is the index's record of corrections not yet in the
// audit trail.
type correctionLog interface {
	UnauditedCorrections(ctx context.Context, limit int) ([]*index.Correction, error)
	MarkCorrectionsAudited(ctx context.Context, ids []int64) error
	StudyPatient(ctx context.Context, study string) (*index.Patient, error)
}

// runCorrectionAudit writes the corrections, links excepted, that any
// process made on the index (pacsd correct as well as the API) to the
// audit trail until ctx ends, as runRemovalAudit does the removal log:
// only serve writes the trail.
func runCorrectionAudit(ctx context.Context, corrections correctionLog, trail *auditlog.Trail, log *slog.Logger) {
	drainToAudit(ctx, "corrections", corrections.UnauditedCorrections, corrections.MarkCorrectionsAudited,
		func(rec *index.Correction) int64 { auditCorrection(ctx, corrections, trail, rec); return rec.ID }, log)
}

// auditCorrection records one correction: Instances Accessed (Update) of
// its study, and of the study a series moved to.
func auditCorrection(ctx context.Context, corrections correctionLog, trail *auditlog.Trail, rec *index.Correction) {
	var patient auditlog.Patient
	if p, err := corrections.StudyPatient(ctx, rec.Study); err == nil {
		patient = auditlog.Patient{ID: p.PatientID, Issuer: p.IssuerOfPatientID, Name: p.Attributes.String(tag.PatientName)}
	}
	studies := []auditlog.Study{{UID: rec.Study}}
	if rec.Target != "" && rec.Target != rec.Study {
		studies = append(studies, auditlog.Study{UID: rec.Target})
	}
	trail.Corrected(auditlog.Actor{User: rec.Principal}, nil, patient, studies...)
}

// linkLog is the index's record of links and unlinks by hand not yet in
// the audit trail.
type linkLog interface {
	UnauditedLinks(ctx context.Context, limit int) ([]index.LinkEvent, error)
	MarkLinksAudited(ctx context.Context, ids []int64) error
}

// runLinkAudit writes the links and unlinks by hand that any process
// made on the index (pacsd patient as well as the API) to the audit
// trail until ctx ends, as runCorrectionAudit does the corrections: each
// patient linked or unlinked is an update of what the archive serves of
// it, Instances Accessed (Update) by whoever asked.
func runLinkAudit(ctx context.Context, links linkLog, trail *auditlog.Trail, log *slog.Logger) {
	drainToAudit(ctx, "links", links.UnauditedLinks, links.MarkLinksAudited,
		func(e index.LinkEvent) int64 {
			for _, k := range e.Patients {
				trail.Corrected(auditlog.Actor{User: e.Principal}, nil, auditlog.Patient{ID: k.ID, Issuer: k.Issuer})
			}
			return e.ID
		}, log)
}
