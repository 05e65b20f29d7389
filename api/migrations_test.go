package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/api"
	"github.com/pacsd/pacsd/migrate"
	"github.com/pacsd/pacsd/migrate/migratetest"
)

func get(t *testing.T, h http.Handler, path string, v any) int {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if v != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
			t.Fatalf("GET %s: %d %s: %v", path, rec.Code, rec.Body, err)
		}
	}
	return rec.Code
}

func TestMigrations(t *testing.T) {
	ctx := t.Context()
	st := &migratetest.Memory{}
	m, _ := st.Begin(ctx, "OLDPACS", migrate.KindDIMSE)
	st.Claim(ctx, m.ID, "", "host:1", time.Now())
	m.Running, m.Heartbeat, m.Window = true, time.Now(), "19:00-07:00"
	st.Update(ctx, m)
	states := []migrate.StudyState{migrate.Verified, migrate.Verified, migrate.Failed, migrate.Conflict, migrate.Pending}
	for i, s := range states {
		st.PutStudy(ctx, m.ID, &migrate.Study{StudyInstanceUID: fmt.Sprintf("1.2.%d", i), PatientID: "P1", PatientName: "ROE^RICHARD",
			StudyDate: "20190304", Modalities: "CT", InstancesAtSource: 120, InstancesHere: 118, State: s, Attempts: 3, Bytes: 1000,
			LastError: "2 instances missing"})
	}
	e := echo.New()
	(&api.Server{Migrations: st}).Register(e)

	var list struct {
		Migrations []struct {
			ID, Source, State, Window string
			Started, Updated          time.Time
			Studies                   map[string]int
			Instances                 int
			Bytes                     int64
			BytesPerSecond            float64 `json:"bytes_per_second"`
			StudiesPerHour            float64 `json:"studies_per_hour"`
			ETASeconds                int64   `json:"eta_seconds"`
		}
	}
	if code := get(t, e, "/api/migrations", &list); code != http.StatusOK || len(list.Migrations) != 1 {
		t.Fatalf("GET /api/migrations: %d %+v", code, list)
	}
	got := list.Migrations[0]
	if got.ID != m.ID || got.Source != "OLDPACS" || got.State != "running" || got.Window != "19:00-07:00" ||
		got.Studies["total"] != 5 || got.Studies["verified"] != 2 || got.Studies["failed"] != 1 || got.Studies["conflict"] != 1 ||
		got.Studies["pending"] != 1 || got.Instances != 5*118 || got.Bytes != 5000 || got.BytesPerSecond <= 0 || got.StudiesPerHour <= 0 {
		t.Errorf("migration = %+v", got)
	}

	var page struct {
		Studies []map[string]any
		Next    string
	}
	if code := get(t, e, "/api/migrations/"+m.ID+"/studies?state=failed,conflict&limit=1", &page); code != http.StatusOK ||
		len(page.Studies) != 1 || page.Next != "1.2.2" || page.Studies[0]["study"] != "1.2.2" || page.Studies[0]["state"] != "failed" ||
		page.Studies[0]["instances_source"] != 120.0 || page.Studies[0]["last_error"] != "2 instances missing" {
		t.Fatalf("first page: %d %+v", code, page)
	}
	get(t, e, "/api/migrations/"+m.ID+"/studies?state=failed,conflict&limit=1&after="+page.Next, &page)
	if len(page.Studies) != 1 || page.Studies[0]["study"] != "1.2.3" {
		t.Errorf("second page: %+v", page)
	}
	for path, want := range map[string]int{
		"/api/migrations/m99/studies":                  http.StatusNotFound,
		"/api/migrations/" + m.ID + "/studies?state=x": http.StatusBadRequest,
		"/api/migrations/" + m.ID + "/studies?limit=0": http.StatusBadRequest,
	} {
		var body struct{ Error string }
		if code := get(t, e, path, &body); code != want || body.Error == "" {
			t.Errorf("GET %s: %d %q, want %d with a reason", path, code, body.Error, want)
		}
	}
}
