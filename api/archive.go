package api

import (
	"archive/zip"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/auth"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/storage"
)

// Objects opens the stored objects of indexed instances.
type Objects interface {
	// Open opens the Part-10 file of in, File Meta Information first.
	Open(ctx context.Context, in *index.Instance) (storage.Object, error)
}

// TicketTTL is how long a download ticket stays good.
const TicketTTL = 60 * time.Second

// maxTickets bounds the tickets held at once; past it the oldest go.
const maxTickets = 10000

// studyVisible checks that the study exists and that the request's
// principal, if any, may see its patient. A patient the principal may not
// see is not found, as docs/api.md says.
func (s *Server) studyVisible(ctx context.Context, study string) error {
	if err := uid.Valid(study); err != nil {
		return errorf(http.StatusBadRequest, "study: "+err.Error())
	}
	pat, err := s.Index.StudyPatient(ctx, study)
	if err != nil {
		return err
	}
	if p, ok := auth.FromContext(ctx); ok && !p.AllowsIssuer(pat.IssuerOfPatientID) {
		return errorf(http.StatusNotFound, "no study "+study)
	}
	return nil
}

// getArchive answers GET and HEAD /api/studies/{study}/archive.zip: the
// study's objects as they are stored, in a ZIP streamed as it is read.
func (s *Server) getArchive(c echo.Context) error {
	study := c.Param("study")
	req := c.Request()
	if t := c.QueryParam("ticket"); t != "" {
		p, ok := s.tickets.redeem(t, study, time.Now())
		if !ok {
			return errorf(http.StatusUnauthorized, "ticket: unknown, used or expired; ask for another")
		}
		req = req.WithContext(auth.NewContext(req.Context(), p))
		c.SetRequest(req)
	}
	ctx := req.Context()
	if err := s.studyVisible(ctx, study); err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, "application/zip")
	h.Set(echo.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="%s.zip"`, study))
	h.Set("Cache-Control", "no-store")
	if req.Method == http.MethodHead {
		return c.NoContent(http.StatusOK)
	}
	c.Response().WriteHeader(http.StatusOK)
	if err := s.writeArchive(ctx, c.Response(), study); err != nil {
		// The status is sent: end the connection before the central
		// directory, so that the client sees a broken archive, never a
		// short one that looks complete.
		s.log().Error("study archive cut short", "study", study, "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// writeArchive writes the ZIP of study's instances to w, each stored
// (not compressed again) as STUDY/SERIES/SOP.dcm.
func (s *Server) writeArchive(ctx context.Context, w io.Writer, study string) error {
	zw := zip.NewWriter(w)
	ident := &dicom.Dataset{Elements: []dicom.Element{{Tag: tag.StudyInstanceUID, VR: "UI", Values: []string{study}}}}
	for in, err := range s.Index.FindInstances(ctx, &index.Query{Level: index.ImageLevel, Identifier: ident}) {
		if err != nil {
			return fmt.Errorf("find the instances of %s: %w", study, err)
		}
		if err := s.addObject(ctx, zw, in); err != nil {
			return err
		}
	}
	return zw.Close()
}

func (s *Server) addObject(ctx context.Context, zw *zip.Writer, in *index.Instance) error {
	obj, err := s.Objects.Open(ctx, in)
	if err != nil {
		return err
	}
	defer obj.Close()
	fw, err := zw.CreateHeader(&zip.FileHeader{
		Name:               in.StudyInstanceUID + "/" + in.SeriesInstanceUID + "/" + in.SOPInstanceUID + ".dcm",
		Method:             zip.Store,
		Modified:           in.ReceivedAt,
		UncompressedSize64: uint64(obj.Size()),
	})
	if err != nil {
		return err
	}
	if _, err := io.Copy(fw, obj); err != nil {
		return fmt.Errorf("copy %s: %w", in.SOPInstanceUID, err)
	}
	return nil
}

// postArchiveTicket answers POST /api/studies/{study}/archive-ticket with
// a URL that downloads the study once, within TicketTTL, as the
// principal who asked.
func (s *Server) postArchiveTicket(c echo.Context) error {
	study := c.Param("study")
	ctx := c.Request().Context()
	if err := s.studyVisible(ctx, study); err != nil {
		return err
	}
	p, _ := auth.FromContext(ctx)
	t, err := s.tickets.issue(study, p, time.Now())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{
		"url":        "/api/studies/" + url.PathEscape(study) + "/archive.zip?ticket=" + url.QueryEscape(t),
		"expires_in": int(TicketTTL / time.Second),
	})
}

// tickets are the download tickets issued and not yet used. They live in
// the process that issued them: behind a load balancer, the download must
// reach the node that gave the ticket (as a sticky session does).
type tickets struct {
	mu sync.Mutex
	m  map[string]ticket
}

type ticket struct {
	study     string
	principal *auth.Principal
	expires   time.Time
}

func (ts *tickets) issue(study string, p *auth.Principal, now time.Time) (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("ticket: %w", err)
	}
	t := base64.RawURLEncoding.EncodeToString(b)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.m == nil {
		ts.m = map[string]ticket{}
	}
	for k, v := range ts.m {
		if !now.Before(v.expires) || len(ts.m) >= maxTickets {
			delete(ts.m, k)
		}
	}
	ts.m[t] = ticket{study: study, principal: p, expires: now.Add(TicketTTL)}
	return t, nil
}

// redeem takes the ticket t for study, once: the principal it was issued
// to, and whether it was good.
func (ts *tickets) redeem(t, study string, now time.Time) (*auth.Principal, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	v, ok := ts.m[t]
	if !ok {
		return nil, false
	}
	delete(ts.m, t)
	if v.study != study || !now.Before(v.expires) {
		return nil, false
	}
	if v.principal == nil {
		v.principal = auth.Anonymous()
	}
	return v.principal, true
}
