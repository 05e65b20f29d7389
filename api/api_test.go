package api

import (
	"context"
	"encoding/json"
	"iter"
	"net/http"
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

// fakeIndex holds one study of three instances in two series.
type fakeIndex struct{}

func (fakeIndex) FindInstances(ctx context.Context, q *index.Query) iter.Seq2[*index.Instance, error] {
	return func(yield func(*index.Instance, error) bool) {
		study, series := q.Identifier.String(tag.StudyInstanceUID), q.Identifier.String(tag.SeriesInstanceUID)
		if study != "1.2.3" {
			return
		}
		for _, in := range []*index.Instance{
			{StudyInstanceUID: "1.2.3", SeriesInstanceUID: "1.2.3.1", SOPInstanceUID: "1.2.3.1.1"},
			{StudyInstanceUID: "1.2.3", SeriesInstanceUID: "1.2.3.1", SOPInstanceUID: "1.2.3.1.2"},
			{StudyInstanceUID: "1.2.3", SeriesInstanceUID: "1.2.3.2", SOPInstanceUID: "1.2.3.2.1"},
		} {
			if series != "" && in.SeriesInstanceUID != series {
				continue
			}
			if !yield(in, nil) {
				return
			}
		}
	}
}

func (fakeIndex) StudyPatient(ctx context.Context, study string) (*index.Patient, error) {
	return &index.Patient{Attributes: &dicom.Dataset{Elements: []dicom.Element{{Tag: tag.PatientName, VR: "PN", Values: []string{"DOE^JOHN"}}}}}, nil
}

func newTestServer(t *testing.T) (*httptest.Server, *routetest.Memory, *[]string) {
	q := routetest.NewMemory(nil)
	var woken []string
	s := &Server{Queue: q, Index: fakeIndex{}, Destinations: []Destination{
		{Name: "REPORTING", Kind: "dimse", Address: "10.1.2.3:104"},
		{Name: "TRUSTB", Kind: "dicomweb", Address: "https://b.example/dicom-web"},
	}, Wake: func(d ...string) { woken = append(woken, d...) }}
	e := echo.New()
	s.Register(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv, q, &woken
}

func call(t *testing.T, srv *httptest.Server, method, path, body string, want int, out any) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		var e map[string]string
		json.NewDecoder(resp.Body).Decode(&e)
		t.Fatalf("%s %s: %s %v, want %d", method, path, resp.Status, e, want)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

func TestSendAndQueue(t *testing.T) {
	srv, q, woken := newTestServer(t)
	var sent struct {
		Tasks []struct{ Destination, Study, State string }
	}
	call(t, srv, "POST", "/api/studies/1.2.3/send", `{"to": ["REPORTING", "TRUSTB"]}`, 202, &sent)
	if len(sent.Tasks) != 2 || sent.Tasks[0].State != "pending" || strings.Join(*woken, ",") != "REPORTING,TRUSTB" {
		t.Errorf("send answered %+v, woke %v", sent, *woken)
	}
	call(t, srv, "POST", "/api/studies/1.2.3/send", `{"to": ["REPORTING"], "series": "1.2.3.2"}`, 202, nil)
	tasks, _ := q.Tasks(t.Context(), route.TaskQuery{Destination: "TRUSTB"})
	if len(tasks) != 1 || tasks[0].Pending != 3 || tasks[0].Priority != route.High {
		t.Errorf("TRUSTB tasks %+v", tasks)
	}

	var e map[string]string
	call(t, srv, "POST", "/api/studies/1.2.3/send", `{"to": ["NOWHERE"]}`, 400, nil)
	call(t, srv, "POST", "/api/studies/1.2.4/send", `{"to": ["REPORTING"]}`, 404, &e)
	call(t, srv, "POST", "/api/studies/1.2.3/send", `{"to": `, 400, nil)
	call(t, srv, "POST", "/api/studies/1.2.3/send", `{}`, 400, nil)

	l, _ := q.Take(t.Context(), "REPORTING", "n1", time.Minute)
	q.Finish(t.Context(), l, nil, route.Finish{Verdict: route.GiveUp, Err: "C-STORE 0xA700: out of resources"})
	var rep QueueReport
	call(t, srv, "GET", "/api/queue", "", 200, &rep)
	if len(rep.Destinations) != 2 {
		t.Fatalf("queue %+v", rep)
	}
	r, b := rep.Destinations[0], rep.Destinations[1]
	if r.Name != "REPORTING" || r.Kind != "dimse" || r.Address != "10.1.2.3:104" || r.Failed != 1 || r.Pending != 0 || r.LastError == "" || r.LastSuccess != nil {
		t.Errorf("REPORTING %+v", r)
	}
	if b.Name != "TRUSTB" || b.Pending != 1 {
		t.Errorf("TRUSTB %+v", b)
	}

	var list struct {
		Tasks []taskJSON
		Next  string
	}
	call(t, srv, "GET", "/api/queue/REPORTING/tasks?state=failed", "", 200, &list)
	if len(list.Tasks) != 1 || list.Tasks[0].Patient != "DOE^JOHN" || list.Tasks[0].Attempts != 1 || list.Tasks[0].Instances != 3 || list.Next != "" {
		t.Errorf("failed tasks %+v", list)
	}
	call(t, srv, "GET", "/api/queue/REPORTING/tasks?state=bogus", "", 400, nil)
	call(t, srv, "GET", "/api/queue/NOWHERE/tasks", "", 404, nil)

	var rq map[string]int
	call(t, srv, "POST", "/api/queue/REPORTING/retry", `{}`, 200, &rq)
	if rq["requeued"] != 0 {
		t.Errorf("retry without failed requeued %d", rq["requeued"])
	}
	call(t, srv, "POST", "/api/queue/REPORTING/retry", `{"failed": true}`, 200, &rq)
	if rq["requeued"] != 1 {
		t.Errorf("retry requeued %d", rq["requeued"])
	}
	call(t, srv, "DELETE", "/api/queue/TRUSTB/tasks/1.2.3", "", 204, nil)
	call(t, srv, "DELETE", "/api/queue/TRUSTB/tasks/1.2.3", "", 404, nil)
}
