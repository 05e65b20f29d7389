package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/internal/dcmgen"
)

// dialAs associates with p as the modality ae, proposing CT Image
// Storage.
func dialAs(t *testing.T, p *instance, ae string) *dimse.Association {
	t.Helper()
	d := &dimse.Dialer{CallingAE: ae, CalledAE: "PACSD", Proposals: []dimse.Proposal{
		{AbstractSyntax: uid.CTImageStorage, TransferSyntaxes: []string{uid.ExplicitVRLittleEndian}},
	}}
	a, err := d.Dial(t.Context(), p.dimseAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Abort() })
	return a
}

// ctInstance returns the Part-10 file and the data set of a small CT
// instance; rows makes copies of one instance differ.
func ctInstance(t *testing.T, study, series, sop string, rows int) (file, ds []byte) {
	t.Helper()
	var b bytes.Buffer
	in := &dcmgen.Instance{
		Patient:        dcmgen.Patient{Name: "Re^Sent", ID: "RESENT"},
		Study:          dcmgen.Study{UID: study},
		Series:         dcmgen.Series{UID: series, Modality: "CT"},
		SOPInstanceUID: sop,
		Rows:           rows, Columns: 16,
	}
	if _, err := dcmgen.WriteFile(&b, in); err != nil {
		t.Fatal(err)
	}
	_, n, err := dicom.ReadFileMeta(bufio.NewReader(bytes.NewReader(b.Bytes())))
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), b.Bytes()[n:]
}

func storeAs(t *testing.T, a *dimse.Association, sop string, ds []byte) (dimse.Status, error) {
	t.Helper()
	return a.Store(t.Context(), &dimse.StoreRequest{SOPClassUID: uid.CTImageStorage, SOPInstanceUID: sop,
		TransferSyntaxUID: uid.ExplicitVRLittleEndian, Dataset: bytes.NewReader(ds)})
}

// stow posts one Part-10 file with STOW-RS and returns the status and the
// response body.
func stow(t *testing.T, p *instance, file []byte) (int, string) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	w, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
	w.Write(file)
	mw.Close()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+p.httpAddr+"/dicom-web/studies", &body)
	req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
	req.Header.Set("Accept", "application/dicom+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// failureReason returns the FailureReason (0008,1197) of a STOW-RS
// response with one failed instance, as DICOM JSON writes it.
func failureReason(body string) string {
	_, rest, ok := strings.Cut(body, `"00081197":{"vr":"US","Value":[`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, "]")
	return v
}

// TestResentInstances sends an archived instance again in every way the
// default duplicate policy tells apart, and truncated data sets: the
// same modality into the same series replaces it, anyone else is refused
// with 0x0111 (a 409 with FailureReason 273 over STOW-RS) unless the copy
// is identical, and a truncated data set is refused with 0xC000 with
// nothing stored.
func TestResentInstances(t *testing.T) {
	p := startPacsd(t, t.TempDir())
	study, series, sop := dcmgen.UID(), dcmgen.UID(), dcmgen.UID()
	ct1, ct2 := dialAs(t, p, "CT1"), dialAs(t, p, "CT2")
	key := func() string {
		t.Helper()
		a := openArchive(t, p.data)
		in, err := a.db.Instance(t.Context(), sop)
		if err != nil {
			t.Fatal(err)
		}
		return in.Key
	}
	_, ds1 := ctInstance(t, study, series, sop, 16)
	if st, err := storeAs(t, ct1, sop, ds1); err != nil || !st.IsSuccess() {
		t.Fatalf("first store: %v, %v", st, err)
	}
	first := key()

	_, ds2 := ctInstance(t, study, series, sop, 18)
	if st, err := storeAs(t, ct1, sop, ds2); err != nil || !st.IsSuccess() {
		t.Fatalf("resend by the same modality: %v, %v", st, err)
	}
	second := key()
	if second == first {
		t.Fatalf("a replacement kept the key %s", first)
	}
	if _, err := os.Stat(filepath.Join(p.data, "objects", first)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the replaced version is still there: %v", err)
	}

	_, ds3 := ctInstance(t, study, series, sop, 20)
	st, err := storeAs(t, ct2, sop, ds3)
	var se *dimse.StatusError
	if !errors.As(err, &se) || se.Status != dimse.StatusDuplicateSOPInstance || !strings.Contains(se.Comment, "CT1") {
		t.Errorf("resend by another modality: %v, %v; want 0x0111 naming the first sender", st, err)
	}
	otherSeries, ds4 := ctInstance(t, study, dcmgen.UID(), sop, 20)
	if _, err := storeAs(t, ct1, sop, ds4); !errors.As(err, &se) || se.Status != dimse.StatusDuplicateSOPInstance {
		t.Errorf("resend into another series: %v; want 0x0111", err)
	}
	if code, body := stow(t, p, otherSeries); code != http.StatusConflict || failureReason(body) != "273" {
		t.Errorf("STOW-RS resend: %d %s; want 409 with FailureReason 273", code, body)
	}
	if st, err := storeAs(t, ct2, sop, ds2); err != nil || !st.IsSuccess() {
		t.Errorf("identical copy from another modality: %v, %v; want success", st, err)
	}
	if got := key(); got != second {
		t.Errorf("the record moved to %s; want %s", got, second)
	}
	if !strings.Contains(p.log(), "duplicate instance refused") {
		t.Error("no conflict logged")
	}

	// Truncated: cut inside the pixel data, nothing stored.
	cutSOP := dcmgen.UID()
	cutFile, cut := ctInstance(t, study, series, cutSOP, 16)
	cut = cut[:len(cut)-100]
	if _, err := storeAs(t, ct1, cutSOP, cut); !errors.As(err, &se) || se.Status != dimse.StatusCannotUnderstand || se.Comment == "" {
		t.Errorf("truncated data set: %v; want 0xC000 with a comment", err)
	}
	if code, body := stow(t, p, cutFile[:len(cutFile)-100]); code != http.StatusConflict || failureReason(body) != "49152" {
		t.Errorf("truncated STOW-RS part: %d %s; want 409 with FailureReason 49152", code, body)
	}
	if indexedSOPs(t, p, study)[cutSOP] {
		t.Error("the truncated instance is indexed")
	}
	filepath.WalkDir(filepath.Join(p.data, "objects"), func(path string, d os.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), cutSOP) {
			t.Errorf("object of the truncated instance stored: %s", path)
		}
		return nil
	})
}

// TestVerifyRepair leaves in an archive what crashes can leave: an older
// version of an indexed instance, and the object of an instance whose
// record was never committed. pacsd verify reports both as orphans;
// pacsd verify --repair deletes the first and indexes the second, leaves
// an orphan written a moment ago alone, and then verify is clean but for
// that one.
func TestVerifyRepair(t *testing.T) {
	data := t.TempDir()
	p := startPacsd(t, data)
	study, series := dcmgen.UID(), dcmgen.UID()
	a := dialAs(t, p, "CT1")
	sops := []string{dcmgen.UID(), dcmgen.UID()}
	for _, sop := range sops {
		_, ds := ctInstance(t, study, series, sop, 16)
		if st, err := storeAs(t, a, sop, ds); err != nil || !st.IsSuccess() {
			t.Fatal(st, err)
		}
	}
	a.Release(t.Context())
	p.stop()

	objects := filepath.Join(data, "objects")
	au := openArchive(t, data)
	rec, err := au.db.Instance(t.Context(), sops[0])
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(objects, rec.Key))
	if err != nil {
		t.Fatal(err)
	}
	hourAgo := time.Now().Add(-time.Hour)
	write := func(key string, b []byte, mtime time.Time) string {
		path := filepath.Join(objects, filepath.FromSlash(key))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return key
	}
	older := write(archive.Key(study, series, sops[0], "20200101T000000.000000Z_0123456789abcdef"), b, hourAgo)
	lost := dcmgen.UID()
	lostFile, _ := ctInstance(t, study, series, lost, 16)
	unindexed := write(archive.Key(study, series, lost, "20200101T000000.000000Z_fedcba9876543210"), lostFile, hourAgo)
	recent := write(archive.Key(study, series, sops[1], "20200101T000000.000000Z_00000000000000ff"), b, time.Now())

	stdout, _, err := pacsd(t, "verify", "--data", data)
	for _, k := range []string{older, unindexed, recent} {
		if !strings.Contains(stdout, "orphan     "+k) {
			t.Errorf("pacsd verify does not report %s as an orphan:\n%s", k, stdout)
		}
	}
	if err == nil || !strings.Contains(stdout, "3 problems") {
		t.Errorf("pacsd verify: %v\n%s", err, stdout)
	}

	stdout, _, err = pacsd(t, "verify", "--repair", "--data", data)
	t.Logf("pacsd verify --repair: %v\n%s", err, stdout)
	for _, line := range []string{"repair: deleted " + older, "repair: indexed " + unindexed, "repair: left    " + recent, "repaired 2 problems, 1 left"} {
		if !strings.Contains(stdout, line) {
			t.Errorf("pacsd verify --repair does not say %q", line)
		}
	}
	if err == nil {
		t.Error("pacsd verify --repair with a problem left succeeded")
	}
	if _, err := os.Stat(filepath.Join(objects, older)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the older version is still there: %v", err)
	}
	au = openArchive(t, data)
	if in, err := au.db.Instance(context.Background(), lost); err != nil || in.Key != unindexed {
		t.Errorf("the unindexed instance is recorded as %+v, %v", in, err)
	}

	os.Remove(filepath.Join(objects, recent))
	if stdout, _, err := pacsd(t, "verify", "--data", data); err != nil || !strings.Contains(stdout, "0 problems") {
		t.Errorf("pacsd verify after the repair: %v\n%s", err, stdout)
	}
}
