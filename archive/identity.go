package archive

import (
	"strings"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/nhs"
)

// IssuerPolicy gives an Issuer of Patient ID (0010,0021) to instances
// that arrive without one, by where they come from: Patient IDs are
// unique only within their issuer, and two trusts' modalities that send
// the same ID are two patients. The issuer given is indexed and served
// as if the instance carried it; the object keeps the bytes received.
type IssuerPolicy struct {
	// ByAE maps calling AE titles to the issuer of the patient IDs they
	// send.
	ByAE map[string]string
	// Default is the issuer of instances from any other sender,
	// including those stored over DICOMweb; "" leaves them without.
	Default string
}

// For returns the issuer of the Patient IDs callingAE sends, "" for
// none.
func (p IssuerPolicy) For(callingAE string) string {
	if v, ok := p.ByAE[strings.TrimSpace(callingAE)]; ok {
		return v
	}
	return p.Default
}

// amendment returns the attributes the archive serves of an instance
// received from callingAE in place of its header's: the issuer its
// sender stands for, when its header has none. nil for none.
func (s *Service) amendment(h *dicom.Dataset, callingAE string) *dicom.Dataset {
	if strings.TrimSpace(h.String(tag.IssuerOfPatientID)) != "" || strings.TrimSpace(h.String(tag.PatientID)) == "" {
		return nil
	}
	issuer := s.cfg.Issuers.For(callingAE)
	if issuer == "" {
		return nil
	}
	return &dicom.Dataset{Elements: []dicom.Element{{Tag: tag.IssuerOfPatientID, VR: "LO", Values: []string{issuer}}}}
}

// nhsNumber returns the valid NHS number h gives its patient: its
// Patient ID when its issuer is the NHS, or the ID of an item of Other
// Patient IDs Sequence whose issuer is. An invalid one is logged, never
// returned: a wrong digit must not link two people.
func (s *Service) nhsNumber(h *dicom.Dataset, sopInstanceUID string) string {
	issuers := s.cfg.NHSIssuers
	if issuers == nil {
		issuers = nhs.DefaultIssuers
	}
	return nhsNumber(issuers, h, func(err error) {
		s.log.Warn("NHS number with an invalid check digit indexed as a plain ID, not linked", "sop_instance_uid", sopInstanceUID, "err", err)
	})
}

// nhsNumber is Service.nhsNumber with the issuers that name the NHS;
// invalid, if not nil, hears of an invalid number.
func nhsNumber(issuers nhs.Issuers, h *dicom.Dataset, invalid func(error)) string {
	isNHS := func(d *dicom.Dataset) bool {
		if issuers.Has(d.String(tag.IssuerOfPatientID)) {
			return true
		}
		for _, q := range d.Items(tag.IssuerOfPatientIDQualifiersSequence) {
			if issuers.Has(q.String(tag.UniversalEntityID)) {
				return true
			}
		}
		return false
	}
	candidates := []*dicom.Dataset{h}
	candidates = append(candidates, h.Items(tag.OtherPatientIDsSequence)...)
	for _, d := range candidates {
		id := strings.TrimSpace(d.String(tag.PatientID))
		if id == "" || !isNHS(d) {
			continue
		}
		n, err := nhs.Normalize(id)
		if err != nil {
			if invalid != nil {
				invalid(err)
			}
			continue
		}
		return n
	}
	return ""
}

// identify completes the record of an instance being stored with what it
// says of its patient's identity.
func (s *Service) identify(in *index.Instance, put *index.PutRequest, callingAE string) {
	in.Amended = s.amendment(in.Header, callingAE)
	put.NHSNumber = s.nhsNumber(index.Overlay(in.Header, in.Amended), in.SOPInstanceUID)
}
