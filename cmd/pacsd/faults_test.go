package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// TestPostgresRestartMidIngest restarts PostgreSQL while a modality
// stores a series: every instance acknowledged with success is indexed
// with its object, every other one got a failure status that tells the
// modality to send it again, and pacsd stores again once the database is
// back, without being restarted.
func TestPostgresRestartMidIngest(t *testing.T) {
	testpeer.Need(t, "postgres")
	pg := testpeer.StartPostgresT(t)
	data := t.TempDir()
	p := startPacsd(t, data, "--index", pg.NewDatabaseT(t))
	a, _ := dial(t, p)
	study, series := dcmgen.UID(), dcmgen.UID()

	var acked, refused []string
	restarted := make(chan error, 1)
	for i := range 400 {
		if i == 40 {
			go func() { restarted <- pg.Restart(context.Background()) }()
		}
		sop := fmt.Sprintf("%s.%d", series, i+1)
		st, err := a.Store(t.Context(), &dimse.StoreRequest{SOPClassUID: uid.CTImageStorage, SOPInstanceUID: sop,
			TransferSyntaxUID: uid.ExplicitVRLittleEndian, Dataset: bytes.NewReader(dataset(t, study, series, sop))})
		var se *dimse.StatusError
		switch {
		case err == nil && st.IsSuccess():
			acked = append(acked, sop)
		case errors.As(err, &se) && se.Status&0xFF00 == 0xA700:
			refused = append(refused, sop)
		default:
			t.Fatalf("instance %d: status %v, %v; want success or 0xA7xx", i+1, st, err)
		}
	}
	if err := <-restarted; err != nil {
		t.Fatalf("restart PostgreSQL: %v", err)
	}
	t.Logf("%d acknowledged, %d refused with 0xA7xx while PostgreSQL restarted", len(acked), len(refused))
	if len(refused) == 0 {
		t.Log("no store fell into the restart; the check below still holds")
	}
	// After the restart, stores succeed again on the same association.
	sop := series + ".9999"
	if st, err := a.Store(t.Context(), &dimse.StoreRequest{SOPClassUID: uid.CTImageStorage, SOPInstanceUID: sop,
		TransferSyntaxUID: uid.ExplicitVRLittleEndian, Dataset: bytes.NewReader(dataset(t, study, series, sop))}); err != nil || !st.IsSuccess() {
		t.Fatalf("store after the restart: %v %v", st, err)
	}
	acked = append(acked, sop)
	if err := a.Release(t.Context()); err != nil {
		t.Errorf("release: %v", err)
	}

	// Every acknowledged instance is indexed, with its object.
	found := map[string]bool{}
	for _, m := range qido(t, p, "/studies/"+study+"/instances") {
		e, _ := m["00080018"].(map[string]any)
		v, _ := e["Value"].([]any)
		if len(v) == 1 {
			found[v[0].(string)] = true
		}
	}
	for _, sop := range acked {
		if !found[sop] {
			t.Errorf("%s was acknowledged but is not indexed", sop)
		}
	}
	for _, sop := range acked[:min(len(acked), 20)] {
		url := "http://" + p.httpAddr + "/dicom-web/studies/" + study + "/series/" + series + "/instances/" + sop
		if obj := wadoObject(t, url); len(obj) < 132 {
			t.Errorf("%s: object of %d bytes", sop, len(obj))
		}
	}
}
