package api

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/route"
	"github.com/pacsd/pacsd/route/routetest"
)

// fakeCorrections records the corrections it is asked for.
type fakeCorrections struct {
	fakeIndex
	made []*index.Correction
}

func (f *fakeCorrections) Correct(ctx context.Context, c *index.Correction) (*index.Correction, error) {
	if strings.TrimSpace(c.Reason) == "" {
		return nil, index.ErrInvalidCorrection
	}
	rec := *c
	rec.ID = int64(len(f.made) + 1)
	rec.Before = &dicom.Dataset{Elements: []dicom.Element{{Tag: tag.PatientName, VR: "PN", Values: []string{"DOE^JOHN"}}}}
	f.made = append(f.made, &rec)
	return &rec, nil
}

func (f *fakeCorrections) MoveSeries(ctx context.Context, c *index.Correction) (*index.Correction, error) {
	rec := *c
	rec.Study = "1.2.9"
	rec.Before, rec.After = &dicom.Dataset{}, &dicom.Dataset{}
	f.made = append(f.made, &rec)
	return &rec, nil
}

func (f *fakeCorrections) Corrections(ctx context.Context, study string) ([]*index.Correction, error) {
	return f.made, nil
}

func (f *fakeCorrections) Correction(ctx context.Context, id int64) (*index.Correction, error) {
	for _, rec := range f.made {
		if rec.ID == id {
			return rec, nil
		}
	}
	return nil, index.ErrNotFound
}

func (f *fakeCorrections) Undo(ctx context.Context, id int64, reason, principal string) (*index.Correction, error) {
	return nil, index.ErrNotFound
}

func TestStudyUpdate(t *testing.T) {
	q := routetest.NewMemory(nil)
	ctx := t.Context()
	// REPORTING had the study already; TRUSTB never did.
	if err := q.Enqueue(ctx, route.Entry{Destination: "REPORTING", Study: "1.2.3", SOPInstanceUID: "1.2.3.1.1", Due: time.Now()}); err != nil {
		t.Fatal(err)
	}
	l, err := q.Take(ctx, "REPORTING", "me", time.Minute)
	if err != nil || l == nil {
		t.Fatalf("Take = %v, %v", l, err)
	}
	var outcomes []route.Outcome
	for _, it := range l.Items {
		outcomes = append(outcomes, route.Outcome{Item: it})
	}
	if err := q.Finish(ctx, l, outcomes, route.Finish{Verdict: route.Sent}); err != nil {
		t.Fatal(err)
	}
	fc := &fakeCorrections{}
	var woken []string
	s := &Server{Queue: q, Index: fakeIndex{}, Corrections: fc, Destinations: []Destination{
		{Name: "REPORTING", Kind: "dimse"}, {Name: "TRUSTB", Kind: "dicomweb"},
	}, Wake: func(d ...string) { woken = append(woken, d...) }}
	e := echo.New()
	s.Register(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)

	body := `{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "ROE^JANE"}]}}`
	call(t, srv, "POST", "/api/studies/1.2.3/update", body, 400, nil)
	call(t, srv, "POST", "/api/studies/1.2.3/update", `{"00100010": {"vr": "PN"}, "reason": "   "}`, 400, nil)
	call(t, srv, "POST", "/api/studies/1.2.3/update", `{"reason": 3}`, 400, nil)
	if len(fc.made) != 0 {
		t.Fatalf("corrections made without a reason: %+v", fc.made)
	}
	var got CorrectionView
	call(t, srv, "POST", "/api/studies/1.2.3/update?reason=wrong+name", body, 200, &got)
	if got.ID != 1 || got.Reason != "wrong name" || !strings.Contains(string(got.After), "ROE^JANE") || !strings.Contains(string(got.Before), "DOE^JOHN") {
		t.Errorf("update answered %+v", got)
	}
	if c := fc.made[0]; c.Study != "1.2.3" || c.After.String(tag.PatientName) != "ROE^JANE" || c.Principal == "" {
		t.Errorf("correction asked = %+v", c)
	}
	// The reason may come in the body.
	call(t, srv, "POST", "/api/studies/1.2.3/update", `{"00081030": {"vr": "LO", "Value": ["CT HEAD"]}, "reason": "typo"}`, 200, nil)
	if c := fc.made[1]; c.Reason != "typo" || c.After.String(tag.StudyDescription) != "CT HEAD" || len(c.After.Elements) != 1 {
		t.Errorf("correction asked = %+v", c)
	}
	// The destination that had the study gets it again.
	tasks, err := q.Tasks(ctx, route.TaskQuery{Destination: "REPORTING", Study: "1.2.3", State: route.Pending})
	if err != nil || len(tasks) != 1 || len(woken) == 0 || woken[0] != "REPORTING" {
		t.Errorf("after a correction: REPORTING tasks %+v, %v; woken %q", tasks, err, woken)
	}
	if tasks, _ := q.Tasks(ctx, route.TaskQuery{Destination: "TRUSTB"}); len(tasks) != 0 {
		t.Errorf("TRUSTB, which never had the study, got %+v", tasks)
	}

	call(t, srv, "POST", "/api/series/1.2.3.1/move", `{"study": "1.2.3"}`, 400, nil)
	call(t, srv, "POST", "/api/series/1.2.3.1/move", `{"study": "not a uid", "reason": "x"}`, 400, nil)
	call(t, srv, "POST", "/api/series/1.2.3.1/move?reason=wrong+patient", `{"study": "1.2.3"}`, 200, nil)
	var list []CorrectionView
	call(t, srv, "GET", "/api/corrections?study=1.2.3", "", 200, &list)
	if len(list) != 3 {
		t.Errorf("GET /api/corrections: %d corrections, want 3", len(list))
	}
	call(t, srv, "POST", "/api/corrections/7/undo?reason=x", "", 404, nil)
	call(t, srv, "POST", "/api/corrections/x/undo?reason=x", "", 400, nil)
	call(t, srv, "POST", "/api/corrections/1/undo", "", 400, nil)
}
