package dicomweb

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/sqlindex"
	"github.com/pacsd/pacsd/index/sqlite"
	"github.com/pacsd/pacsd/storage/mem"
)

// FuzzSearchParams feeds query strings to the QIDO-RS parameter parser:
// whatever the query, it answers with a query within the limits, "no
// match", or a 400 with a reason, and the index accepts or refuses the
// query without failing.
func FuzzSearchParams(f *testing.F) {
	for _, q := range []string{
		"PatientName=M*&limit=2&offset=2",
		"StudyInstanceUID=1.2.3,1.2.4%5C1.2.5&StudyInstanceUID=1.2.6",
		"SOPInstanceUID=1.2.3&SOPInstanceUID=1.2.3",
		"PatientID=X&PatientID=&includefield=all&includefield=00081030,PatientAge",
		"StudyDate=20200101-20201231&ModalitiesInStudy=CT&fuzzymatching=true",
		"RequestAttributesSequence.RequestedProcedureID=A%5CB",
		"00100010=%3Dyamada&accept=application/dicom%2Bjson&charset=utf-8",
		"limit=1&limit=2",
		"PatientName.PatientID=1&00091001=x",
	} {
		f.Add(q)
	}
	lim := Limits{SearchValues: 50, SearchAttributes: 80}
	f.Fuzz(func(t *testing.T, raw string) {
		params, _ := url.ParseQuery(raw) // what parses, as echo takes it
		for _, level := range []index.Level{index.StudyLevel, index.SeriesLevel, index.ImageLevel} {
			q, err := parseSearch(params, level, "1.2.3", "", lim)
			var e *Error
			switch {
			case errors.Is(err, errNoMatch):
				continue
			case errors.As(err, &e):
				if e.Status != http.StatusBadRequest || e.Reason == "" {
					t.Fatalf("error %d %q, want a 400 with a reason", e.Status, e.Reason)
				}
				continue
			case err != nil:
				t.Fatalf("error %v is not an *Error", err)
			}
			values := 0
			for _, el := range q.Identifier.Elements {
				values += len(el.Values)
				for _, it := range el.Items {
					for _, ie := range it.Elements {
						values += len(ie.Values)
					}
				}
			}
			// The path's study UID is one value more than the query's.
			if values > lim.SearchValues+1 || len(q.Identifier.Elements) > lim.SearchAttributes {
				t.Fatalf("query of %d values and %d attributes passed limits of %d and %d", values, len(q.Identifier.Elements), lim.SearchValues, lim.SearchAttributes)
			}
			sqlindex.UnsupportedKeys(q) // may refuse, must not fail
		}
	})
}

// FuzzStow feeds STOW-RS bodies through the multipart reader and the
// store handler into an archive in memory: whatever the body, the answer
// is a STOW-RS status with a DICOM JSON response or a 4xx with a reason.
func FuzzStow(f *testing.F) {
	const boundary = "pacsd-fuzz"
	var samples [][]byte
	for _, n := range []string{"ct-explicit-le.dcm", "mr-implicit-le-latin1.dcm", "ct-utf8-multiframe.dcm"} {
		b, err := os.ReadFile(filepath.Join("..", "testdata", "dicom", n))
		if err != nil {
			f.Fatal(err)
		}
		samples = append(samples, b)
	}
	body := func(parts ...[]byte) []byte {
		var b bytes.Buffer
		for _, p := range parts {
			fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: application/dicom\r\n\r\n", boundary)
			b.Write(p)
		}
		fmt.Fprintf(&b, "\r\n--%s--", boundary)
		return b.Bytes()
	}
	f.Add(body(samples...))
	f.Add(body(samples[0][132:], samples[1][128:]))
	f.Add(body(samples[2][:400]))
	f.Add(body([]byte("not DICOM")))
	f.Add(append(body(samples[0]), "--"+boundary+"\r\nContent-Type: application/dicom+json\r\n\r\n{}"...))
	f.Add([]byte("--" + boundary + "\r\nContent-Type: application/dicom\r\n\r\nDICM"))

	db, err := sqlite.Open(f.Context(), sqlite.Memory)
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	s := &Server{Index: db, Archive: archive.New(archive.Config{Store: mem.New(), Index: db, AETitle: "PACSD"}), MaxBodyBytes: 1 << 20}
	e := echo.New()
	s.Register(e)
	f.Fuzz(func(t *testing.T, b []byte) {
		req := httptest.NewRequest("POST", "/dicom-web/studies", bytes.NewReader(b))
		req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+boundary)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusAccepted, http.StatusConflict:
			var m map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
				t.Fatalf("%d with a body that is not DICOM JSON: %v", rec.Code, err)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if rec.Body.Len() < 2 {
				t.Fatalf("%d without a reason", rec.Code)
			}
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body.Bytes())
		}
	})
}
