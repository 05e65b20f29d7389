package dicomweb

import (
	"net/http"
	"testing"

	"github.com/pacsd/pacsd/dicom/codec"
	"github.com/pacsd/pacsd/dicom/uid"
)

// FuzzAccept feeds Accept headers to the negotiation of objects and
// frames: any header gives a choice or a 406, and a choice is one pacsd
// can send.
func FuzzAccept(f *testing.F) {
	for _, seed := range []string{
		`multipart/related; type="application/dicom"; transfer-syntax=*`,
		`multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1, */*;q=0.1`,
		`multipart/related; type="image/jphc"; transfer-syntax=1.2.840.10008.1.2.4.202`,
		`image/jls;q=0.9, image/*;q=0.5, multipart/related;type=image/jp2`,
		`application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50`,
		`multipart/related; type="image/jpeg"; transfer-syntax="1.2.840.10008.1.2.4.70"; q=0`,
		`,,;;"=`,
	} {
		f.Add(seed, uid.JPEGLSLossless)
		f.Add(seed, uid.ExplicitVRLittleEndian)
	}
	s := &Server{Codecs: codec.New(codec.Options{})}
	f.Fuzz(func(t *testing.T, accept, stored string) {
		// The stored syntax comes from the index, which holds only the
		// transfer syntaxes of objects read whole at ingest.
		if _, ok := uid.LookupTransferSyntax(stored); !ok {
			stored = uid.ExplicitVRLittleEndian
		}
		r, _ := http.NewRequest("GET", "/", nil)
		r.Header.Set("Accept", accept)
		if want, _, err := negotiateDICOM(r, true); err == nil {
			if c, err := s.choose(stored, want); err == nil && c.TransferSyntax == "" {
				t.Errorf("Accept %q: no transfer syntax chosen", accept)
			}
		}
		storedType := frameMediaTypes[stored]
		if storedType == "" {
			storedType, stored = "application/octet-stream", uid.ExplicitVRLittleEndian
		}
		ch, err := s.negotiateFrames(r, storedType, stored, true)
		if err != nil {
			return
		}
		if ch.typ == "" || ch.syntax == "" {
			t.Fatalf("Accept %q: chose %+v", accept, ch)
		}
		if ch.syntax != stored {
			if _, ok := s.reach(stored, ch.syntax); !ok {
				t.Errorf("Accept %q: chose %s, which %s does not convert to", accept, ch.syntax, stored)
			}
		}
	})
}
