package main

import (
	"context"
	"log/slog"
	"time"

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
// audit trail, every removalAuditInterval until ctx ends: only serve
// writes the trail. Two nodes may both write one before either marks
// it: at least once, as the removal log.
func runCorrectionAudit(ctx context.Context, corrections correctionLog, trail *auditlog.Trail, log *slog.Logger) {
	tick := time.NewTicker(removalAuditInterval)
	defer tick.Stop()
	for {
		for {
			recs, err := corrections.UnauditedCorrections(ctx, 100)
			if err != nil {
				if ctx.Err() == nil {
					log.Error("reading the corrections for the audit trail failed", "err", err)
				}
				break
			}
			ids := make([]int64, len(recs))
			for i, rec := range recs {
				auditCorrection(ctx, corrections, trail, rec)
				ids[i] = rec.ID
			}
			if err := corrections.MarkCorrectionsAudited(ctx, ids); err != nil {
				if ctx.Err() == nil {
					log.Error("marking corrections audited failed", "err", err)
				}
				break
			}
			if len(recs) < 100 {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
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
