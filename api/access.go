package api

import (
	"context"
	"fmt"

	"github.com/pacsd/pacsd/auth"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
)

// Per-trust access: a principal limited to some issuers of patient IDs
// sees, corrects and links only their patients. What it may not see is
// answered as not found, as the DICOMweb and DIMSE front doors answer,
// so that a study of another trust is not even confirmed to exist.

// allowStudy fails with index.ErrNotFound when the caller may not see
// the patient of study.
func (s *Server) allowStudy(ctx context.Context, study string) error {
	p, ok := auth.FromContext(ctx)
	if !ok || p.Issuers == nil {
		return nil
	}
	pat, err := s.Index.StudyPatient(ctx, study)
	if err != nil {
		return err
	}
	if !p.AllowsIssuer(pat.IssuerOfPatientID) {
		return fmt.Errorf("study %s: %w", study, index.ErrNotFound)
	}
	return nil
}

// allowSeries fails with index.ErrNotFound when the caller may not see
// the patient of the study that holds series, or when no instance of
// series is there to see.
func (s *Server) allowSeries(ctx context.Context, series string) error {
	p, ok := auth.FromContext(ctx)
	if !ok || p.Issuers == nil {
		return nil
	}
	ident := &dicom.Dataset{Elements: []dicom.Element{
		{Tag: tag.SeriesInstanceUID, VR: "UI", Values: []string{series}},
		{Tag: tag.SOPInstanceUID, VR: "UI"},
	}}
	q := &index.Query{Level: index.ImageLevel, Identifier: ident, Issuers: p.Issuers}
	for in, err := range s.Index.FindInstances(ctx, q) {
		if err != nil {
			return err
		}
		return s.allowStudy(ctx, in.StudyInstanceUID)
	}
	return fmt.Errorf("series %s: %w", series, index.ErrNotFound)
}

// allowPatients fails with index.ErrNotFound when the caller may not see
// one of the patients.
func allowPatients(ctx context.Context, keys ...index.PatientKey) error {
	p, ok := auth.FromContext(ctx)
	if !ok || p.Issuers == nil {
		return nil
	}
	for _, k := range keys {
		if !p.AllowsIssuer(k.Issuer) {
			return fmt.Errorf("patient %s: %w", k, index.ErrNotFound)
		}
	}
	return nil
}
