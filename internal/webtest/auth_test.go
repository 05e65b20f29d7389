package webtest

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// TestDicomwebClientBearer searches pacsd with dicomweb-client signed in
// with a machine token, as an application configured with one does, and
// without it.
func TestDicomwebClientBearer(t *testing.T) {
	needNodeModules(t)
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	stdout, _ := testpeer.RunT(t, pacsdBinary(t), "token", "create", "viewer", "--scopes", "read", "--token-file", tokens)
	token := strings.TrimSpace(stdout)
	p := startPacsd(t, "--http-auth", "token", "--token-file", tokens)

	study := dcmgen.UID()
	f, err := dcmgen.Create(filepath.Join(dir, "ct.dcm"), &dcmgen.Instance{
		Patient: dcmgen.Patient{Name: "Bearer^Test", ID: "BEARER1"},
		Study:   dcmgen.Study{UID: study, Date: "20260301"},
		Series:  dcmgen.Series{UID: dcmgen.UID(), Modality: "CT", Number: 1}, Rows: 8, Columns: 8,
	})
	if err != nil {
		t.Fatal(err)
	}
	p.store(t, f.Path)

	var res struct {
		WithToken, WithoutToken struct {
			Studies []string
			Status  int
			Error   string
		}
	}
	runNode(t, time.Minute, "dicomweb-bearer.mjs", map[string]string{"url": p.root(), "token": token, "patientID": "BEARER1"}, &res)
	if !slices.Equal(res.WithToken.Studies, []string{study}) {
		t.Errorf("with the token: studies %v (%s), want %s", res.WithToken.Studies, res.WithToken.Error, study)
	}
	if res.WithoutToken.Status != 401 || res.WithoutToken.Studies != nil {
		t.Errorf("without the token: %+v, want a 401", res.WithoutToken)
	}
}
