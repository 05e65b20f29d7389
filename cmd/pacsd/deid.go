package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/archive"
	auditlog "github.com/pacsd/pacsd/audit"
	"github.com/pacsd/pacsd/auth"
	"github.com/pacsd/pacsd/deid"
	"github.com/pacsd/pacsd/dicomweb"
)

// deidSettings name the project key of de-identification. The key is a
// secret, so the setting is the file that holds it, never the key: as a
// flag, a variable or a config key alike, it names a file (a container
// mounts its secret as one).
type deidSettings struct {
	DeidKey string `name:"deid-key" placeholder:"FILE" help:"file holding the de-identification project key (at least 32 bytes, e.g. openssl rand -hex 32): the same original UID gets the same pseudonymous UID under one key"`
}

// minDeidKey is the shortest key accepted: 256 bits of HMAC key, as hex
// text or raw bytes.
const minDeidKey = 32

// maxDeidKey bounds what is read of the key file.
const maxDeidKey = 4096

// key reads the project key from its file, for deid.Options.Key; nil if
// no file is set. Surrounding white space in the file is not part of the
// key. A file that others than its owner may read is logged: the key
// links every pseudonym to its patient.
func (d *deidSettings) key(log *slog.Logger) ([]byte, error) {
	if d.DeidKey == "" {
		return nil, nil
	}
	f, err := os.Open(d.DeidKey)
	if err != nil {
		return nil, fmt.Errorf("deid_key: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxDeidKey+1))
	if err != nil {
		return nil, fmt.Errorf("deid_key: %w", err)
	}
	key := bytes.TrimSpace(b)
	switch {
	case len(b) > maxDeidKey:
		return nil, fmt.Errorf("deid_key %s: longer than %d bytes; is it the key?", d.DeidKey, maxDeidKey)
	case len(key) < minDeidKey:
		return nil, fmt.Errorf("deid_key %s: the key has %d bytes, fewer than %d: make one with openssl rand -hex 32", d.DeidKey, len(key), minDeidKey)
	}
	if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o077 != 0 {
		log.Warn("the de-identification key file is readable by others than its owner: chmod 600 it", "deid_key", d.DeidKey, "mode", st.Mode().Perm().String())
	}
	// deid.New checks the key as the de-identifications will use it.
	if _, err := deid.New(deid.Options{Key: key}); err != nil {
		return nil, fmt.Errorf("deid_key %s: %w", d.DeidKey, err)
	}
	return key, nil
}

// reidentifyAPIPath is where an admin finds the original of a pseudonym:
// GET /api/reidentify/{uid|patient}/{pseudonym} (admin scope).
const reidentifyAPIPath = "/api/reidentify"

// registerReidentifyAPI serves re-identification from the mapping the
// index keeps; each lookup is recorded in the audit trail.
func registerReidentifyAPI(e *echo.Echo, mapping deid.Reidentifier, trail *auditlog.Trail) {
	e.GET(reidentifyAPIPath+"/:kind/:pseudonym", func(c echo.Context) error {
		kind, pseudonym := deid.Kind(c.Param("kind")), c.Param("pseudonym")
		if kind != deid.KindUID && kind != deid.KindPatient {
			return c.JSON(http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("kind %q: want uid or patient", kind)})
		}
		r := c.Request()
		who := auditlog.Actor{Addr: r.RemoteAddr}
		if p, ok := auth.FromContext(r.Context()); ok {
			who.User = p.Name
		}
		original, found, err := mapping.Original(r.Context(), kind, pseudonym)
		if err == nil && !found {
			err = errNoPseudonym
		}
		trail.Reidentified(who, string(kind), pseudonym, err)
		switch {
		case errors.Is(err, errNoPseudonym):
			return c.JSON(http.StatusNotFound, map[string]string{"error": "no such pseudonym"})
		case err != nil:
			return fmt.Errorf("re-identify: %w", err)
		}
		return c.JSON(http.StatusOK, map[string]string{"kind": string(kind), "pseudonym": pseudonym, "original": original})
	})
}

var errNoPseudonym = errors.New("no such pseudonym")

// researchService serves de-identified copies over DICOMweb to
// principals with the research scope alone, under the project key and
// with the index's mapping, the same as pacsd export uses: a pseudonymous
// UID found by a search is the one an export gives. Without a key there
// is none, and such principals are refused.
func researchService(key []byte, db interface {
	deid.MappingStore
	deid.Reidentifier
}, arch *archive.Service, au *auditor) (*dicomweb.Research, error) {
	if key == nil {
		return nil, nil
	}
	d, err := deid.New(deid.Options{Key: key, Mapping: db})
	if err != nil {
		return nil, err
	}
	return &dicomweb.Research{
		Only: func(ctx context.Context) bool {
			p, ok := auth.FromContext(ctx)
			return ok && p.ResearchOnly()
		},
		Deidentifier: d,
		Originals:    db,
		// Checking a search's matches for burned-in annotation reads
		// their metadata; the search is audited as a query, not as the
		// retrieval the guarded archive would count.
		Inspect: arch.Metadata,
		Refused: func(r *http.Request, why string) {
			who := auditlog.Actor{Addr: r.RemoteAddr}
			if p, ok := auth.FromContext(r.Context()); ok {
				who.User = p.Name
			}
			au.trail.Restricted(who, why)
		},
	}, nil
}

// researchGate lets principals with the research scope alone through to
// the DICOMweb services when they serve de-identified copies (which then
// decide what such a principal may have), and refuses them everything
// else.
func (au *auditor) researchGate(web *dicomweb.Server, next http.Handler) http.Handler {
	refuse := au.refuseResearchOnly(next)
	root := web.Root
	if root == "" {
		root = dicomweb.DefaultRoot
	}
	root = strings.TrimSuffix(root, "/") + "/"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if web.Research != nil && strings.HasPrefix(r.URL.Path, root) {
			next.ServeHTTP(w, r)
			return
		}
		refuse.ServeHTTP(w, r)
	})
}
