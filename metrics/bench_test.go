package metrics

import (
	"fmt"
	"io"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkScrape measures a scrape of /metrics with label counts of a
// busy trust: 40 modalities and workstations, every DIMSE operation with
// a few statuses, every route of DICOMweb and the API, 10 destinations,
// a migration and the runtime collectors. The target is 10 ms.
func BenchmarkScrape(b *testing.B) {
	var aes []string
	for i := range 40 {
		aes = append(aes, fmt.Sprintf("MOD%02d", i))
	}
	r := New(Config{KnownAEs: aes, Runtime: true, Version: "bench"})
	for _, ae := range append(aes, "UNKNOWN") {
		r.ObserveAssociation(ae, true)
		r.ObserveAssociation(ae, false)
		r.ObserveCStore(ae, 0, time.Millisecond, 1000)
	}
	for _, op := range dimseOperations {
		for _, st := range []uint16{0, 0xB000, 0xA700, 0xC000, 0xFE00, 0x0122} {
			r.ObserveDIMSE(op, st, 10*time.Millisecond)
		}
	}
	routes := []string{
		"/dicom-web/studies", "/dicom-web/series", "/dicom-web/instances",
		"/dicom-web/studies/:study/series", "/dicom-web/studies/:study/instances",
		"/dicom-web/studies/:study/series/:series/instances", "/dicom-web/studies/:study",
		"/dicom-web/studies/:study/series/:series", "/dicom-web/studies/:study/series/:series/instances/:instance",
		"/dicom-web/studies/:study/metadata", "/dicom-web/studies/:study/series/:series/metadata",
		"/dicom-web/studies/:study/series/:series/instances/:instance/metadata",
		"/dicom-web/studies/:study/series/:series/instances/:instance/frames/:frames",
		"/dicom-web/studies/:study/series/:series/instances/:instance/bulkdata/:offset/:length",
		"/dicom-web/studies/:study/series/:series/instances/:instance/rendered",
		"/dicom-web/studies/:study/thumbnail", "/dicom-web/studies/:study/series/:series/thumbnail",
		"/wado", "/api/queue", "/api/audit", "/api/changes", "/api/migrations", "/api/ui-config",
		"/api/studies/:study/send", "/api/studies/:study/archive.zip", "/api/studies/:study/update",
		"/api/corrections", "/healthz", "/readyz", "/metrics", "/*",
	}
	for _, rt := range routes {
		for _, m := range []string{"GET", "POST"} {
			for _, st := range []int{200, 204, 400, 404, 500} {
				r.ObserveHTTP(rt, m, st, 5*time.Millisecond)
			}
		}
	}
	for i := range 10 {
		r.SetQueue(fmt.Sprintf("DEST%d", i), QueueState{Pending: i, OldestPending: time.Minute})
	}
	r.SetMigration("OLDPACS", MigrationState{Pending: 1000, Verified: 500})
	for _, be := range []string{"file", "s3", "spool"} {
		r.ObserveStoragePut(be, time.Millisecond, nil)
		r.ObserveStorageGet(be, time.Millisecond, nil)
	}
	h := r.Handler()
	b.ResetTimer()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
		io.Copy(io.Discard, rec.Body)
	}
}
