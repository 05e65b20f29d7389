package api

import (
	"context"
	"net/http"
	"net/url"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/auth"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
)

// Patients is what the API needs of the index to show and link patients.
type Patients interface {
	Person(ctx context.Context, k index.PatientKey) (*index.Person, error)
	// LinkPatients links patients by hand, or unlinks them, recording
	// who asked.
	LinkPatients(ctx context.Context, l index.Link) error
}

// Person is a person as GET /api/patients/{id}^{issuer} and pacsd
// patient show answer it.
type Person struct {
	NHSNumber string          `json:"nhs_number,omitempty"`
	Patients  []PersonPatient `json:"patients"`
}

// PersonPatient is one local patient of a Person.
type PersonPatient struct {
	PatientID         string        `json:"patient_id"`
	IssuerOfPatientID string        `json:"issuer_of_patient_id"`
	LinkedByHand      bool          `json:"linked_by_hand,omitempty"`
	Studies           []PersonStudy `json:"studies"`
}

// PersonStudy is a study of a PersonPatient.
type PersonStudy struct {
	StudyInstanceUID string   `json:"study"`
	StudyDate        string   `json:"study_date,omitempty"`
	StudyDescription string   `json:"study_description,omitempty"`
	AccessionNumber  string   `json:"accession_number,omitempty"`
	Modalities       []string `json:"modalities,omitempty"`
	Instances        int      `json:"instances"`
}

// PersonOf returns p as the API writes it.
func PersonOf(p *index.Person) Person {
	out := Person{NHSNumber: p.NHSNumber, Patients: []PersonPatient{}}
	for _, pp := range p.Patients {
		o := PersonPatient{PatientID: pp.ID, IssuerOfPatientID: pp.Issuer, LinkedByHand: pp.Manual, Studies: []PersonStudy{}}
		for _, st := range pp.Studies {
			o.Studies = append(o.Studies, PersonStudy{
				StudyInstanceUID: st.StudyInstanceUID,
				StudyDate:        st.Attributes.String(tag.StudyDate),
				StudyDescription: st.Attributes.String(tag.StudyDescription),
				AccessionNumber:  st.Attributes.String(tag.AccessionNumber),
				Modalities:       st.ModalitiesInStudy,
				Instances:        st.NumberOfStudyRelatedInstances,
			})
		}
		out.Patients = append(out.Patients, o)
	}
	return out
}

func (s *Server) getPatient(c echo.Context) error {
	raw, err := url.PathUnescape(c.Param("patient"))
	if err != nil {
		return errorf(http.StatusBadRequest, "patient: "+err.Error())
	}
	k, err := index.ParsePatientKey(raw)
	if err != nil {
		return errorf(http.StatusBadRequest, err.Error())
	}
	if err := allowPatients(c.Request().Context(), k); err != nil {
		return err
	}
	p, err := s.Patients.Person(c.Request().Context(), k)
	if err != nil {
		return err
	}
	// The patients linked to this one under issuers the caller may not
	// see are left out, with their studies.
	if pr, ok := auth.FromContext(c.Request().Context()); ok && pr.Issuers != nil {
		p.Patients = slices.DeleteFunc(p.Patients, func(pp *index.PersonPatient) bool { return !pr.AllowsIssuer(pp.Issuer) })
	}
	return c.JSON(http.StatusOK, PersonOf(p))
}

// readPatients reads {"patients": ["ID^ISSUER", ...]}.
func readPatients(c echo.Context) ([]index.PatientKey, error) {
	var body struct {
		Patients []string `json:"patients"`
	}
	if err := readJSON(c, &body); err != nil {
		return nil, err
	}
	if len(body.Patients) == 0 {
		return nil, errorf(http.StatusBadRequest, `patients: name the patients as "ID^ISSUER"`)
	}
	keys := make([]index.PatientKey, 0, len(body.Patients))
	for _, v := range body.Patients {
		k, err := index.ParsePatientKey(v)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, err.Error())
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func (s *Server) postLink(c echo.Context) error {
	keys, err := readPatients(c)
	if err != nil {
		return err
	}
	if err := allowPatients(c.Request().Context(), keys...); err != nil {
		return err
	}
	if err := s.Patients.LinkPatients(c.Request().Context(), index.Link{Patients: keys, Principal: principal(c)}); err != nil {
		return err
	}
	p, err := s.Patients.Person(c.Request().Context(), keys[0])
	if err != nil {
		return err
	}
	s.log().Info("patients linked", "patients", keys, "by", principal(c))
	return c.JSON(http.StatusOK, PersonOf(p))
}

func (s *Server) postUnlink(c echo.Context) error {
	keys, err := readPatients(c)
	if err != nil {
		return err
	}
	if err := allowPatients(c.Request().Context(), keys...); err != nil {
		return err
	}
	if err := s.Patients.LinkPatients(c.Request().Context(), index.Link{Patients: keys, Unlink: true, Principal: principal(c)}); err != nil {
		return err
	}
	s.log().Info("patients unlinked", "patients", keys, "by", principal(c))
	return c.NoContent(http.StatusNoContent)
}
