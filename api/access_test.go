package api

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/auth"
	"github.com/pacsd/pacsd/index"
)

// trustIndex files study 1.2.3 under issuer RXH and 9.9.9 under OTHER.
type trustIndex struct{ fakeIndex }

func (trustIndex) StudyPatient(ctx context.Context, study string) (*index.Patient, error) {
	switch study {
	case "1.2.3":
		return &index.Patient{PatientID: "P1", IssuerOfPatientID: "RXH"}, nil
	case "9.9.9":
		return &index.Patient{PatientID: "P9", IssuerOfPatientID: "OTHER"}, nil
	}
	return nil, index.ErrNotFound
}

// onePerson is a person with a patient under RXH and one under OTHER.
type onePerson struct{ links int }

func (p *onePerson) Person(ctx context.Context, k index.PatientKey) (*index.Person, error) {
	return &index.Person{NHSNumber: "9434765919", Patients: []*index.PersonPatient{
		{PatientKey: index.PatientKey{ID: "P1", Issuer: "RXH"}},
		{PatientKey: index.PatientKey{ID: "P9", Issuer: "OTHER"}},
	}}, nil
}
func (p *onePerson) LinkPatients(ctx context.Context, l index.Link) error { p.links++; return nil }

// TestIssuerAccess: a principal limited to issuer RXH corrects, lists,
// links and reads only RXH's patients; the others are not found.
func TestIssuerAccess(t *testing.T) {
	fc := &fakeCorrections{}
	people := &onePerson{}
	s := &Server{Index: trustIndex{}, Corrections: fc, Patients: people}
	e := echo.New()
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			p := &auth.Principal{Name: "rxh-clerk", Issuers: []string{"RXH"}}
			c.SetRequest(c.Request().WithContext(auth.NewContext(c.Request().Context(), p)))
			return next(c)
		}
	})
	s.Register(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)

	body := `{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "ROE^JANE"}]}, "reason": "wrong name"}`
	call(t, srv, "POST", "/api/studies/9.9.9/update", body, 404, nil)
	call(t, srv, "GET", "/api/corrections?study=9.9.9", "", 404, nil)
	if len(fc.made) != 0 {
		t.Fatalf("a study of another trust was corrected: %+v", fc.made)
	}
	call(t, srv, "POST", "/api/studies/1.2.3/update", body, 200, nil)
	call(t, srv, "GET", "/api/corrections?study=1.2.3", "", 200, nil)

	call(t, srv, "GET", "/api/patients/P9%5EOTHER", "", 404, nil)
	call(t, srv, "POST", "/api/patients/link", `{"patients": ["P1^RXH", "P9^OTHER"]}`, 404, nil)
	if people.links != 0 {
		t.Error("patients of another trust were linked")
	}
	var got Person
	call(t, srv, "GET", "/api/patients/P1%5ERXH", "", 200, &got)
	if len(got.Patients) != 1 {
		t.Errorf("person shows %d patients, want only the one under RXH: %+v", len(got.Patients), got)
	}
}
