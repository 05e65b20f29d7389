package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	auditlog "github.com/pacsd/pacsd/audit"
	"github.com/pacsd/pacsd/auth"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/route"
	"github.com/pacsd/pacsd/storage"
)

// Corrections is what the API needs of the index to correct studies.
type Corrections interface {
	Correct(ctx context.Context, c *index.Correction) (*index.Correction, error)
	MoveSeries(ctx context.Context, c *index.Correction) (*index.Correction, error)
	Corrections(ctx context.Context, study string) ([]*index.Correction, error)
	Undo(ctx context.Context, id int64, reason, principal string) (*index.Correction, error)
	Correction(ctx context.Context, id int64) (*index.Correction, error)
	StudyPatient(ctx context.Context, studyInstanceUID string) (*index.Patient, error)
}

// Originals gives the objects of instances as received.
type Originals interface {
	Instance(ctx context.Context, sopInstanceUID string) (*index.Instance, error)
	Open(ctx context.Context, in *index.Instance) (storage.Object, error)
}

// CorrectionView is a correction as GET /api/corrections lists it.
type CorrectionView struct {
	ID        int64           `json:"id"`
	Study     string          `json:"study"`
	Series    string          `json:"series,omitempty"`
	Target    string          `json:"target,omitempty"`
	Reason    string          `json:"reason"`
	Principal string          `json:"principal"`
	Time      time.Time       `json:"time"`
	Before    json.RawMessage `json:"before"`
	After     json.RawMessage `json:"after"`
	Undoes    int64           `json:"undoes,omitempty"`
	UndoneBy  int64           `json:"undone_by,omitempty"`
}

// CorrectionOf returns c as the API writes it: before and after as DICOM
// JSON objects.
func CorrectionOf(c *index.Correction) (CorrectionView, error) {
	v := CorrectionView{ID: c.ID, Study: c.Study, Series: c.Series, Target: c.Target, Reason: c.Reason,
		Principal: c.Principal, Time: c.Time, Undoes: c.Undoes, UndoneBy: c.UndoneBy}
	var err error
	if v.Before, err = c.Before.MarshalJSON(); err != nil {
		return v, err
	}
	v.After, err = c.After.MarshalJSON()
	return v, err
}

// ParseCorrection reads the body of POST /api/studies/{study}/update: a
// DICOM JSON object of the attributes to correct, with perhaps a
// "reason" member beside the tags.
func ParseCorrection(r io.Reader) (attrs *dicom.Dataset, reason string, err error) {
	var body map[string]json.RawMessage
	if err := json.NewDecoder(io.LimitReader(r, 1<<20)).Decode(&body); err != nil {
		return nil, "", fmt.Errorf("body: %w", err)
	}
	if raw, ok := body["reason"]; ok {
		if err := json.Unmarshal(raw, &reason); err != nil {
			return nil, "", fmt.Errorf("reason: %w", err)
		}
		delete(body, "reason")
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, "", err
	}
	attrs, err = dicom.ParseJSON(b)
	if err != nil {
		return nil, "", fmt.Errorf("body: %w", err)
	}
	return attrs, reason, nil
}

// principal names who made a request, for the record.
func principal(c echo.Context) string {
	if p, ok := auth.FromContext(c.Request().Context()); ok && p != nil && p.Name != "" {
		return p.Name
	}
	return "anonymous@" + c.RealIP()
}

// reasonOf returns the reason of a request: its reason parameter, or
// the one of its body.
func reasonOf(c echo.Context, body string) (string, error) {
	r := strings.TrimSpace(c.QueryParam("reason"))
	if r == "" {
		r = strings.TrimSpace(body)
	}
	if r == "" {
		return "", errorf(http.StatusBadRequest, "reason: say why, in the reason parameter or a \"reason\" member of the body; nothing was changed")
	}
	return r, nil
}

// audit records a correction that failed in the trail. Those made are
// recorded by pacsd serve from the index, whichever process made them.
func (s *Server) audit(c echo.Context, rec *index.Correction, err error, study string) {
	if s.Trail == nil || err == nil {
		return
	}
	var patient auditlog.Patient
	if p, perr := s.Corrections.StudyPatient(c.Request().Context(), study); perr == nil {
		patient = auditlog.Patient{ID: p.PatientID, Issuer: p.IssuerOfPatientID, Name: p.Attributes.String(tag.PatientName)}
	}
	studies := []auditlog.Study{{UID: study}}
	if rec != nil && rec.Target != "" && rec.Target != study {
		studies = append(studies, auditlog.Study{UID: rec.Target})
	}
	s.Trail.Corrected(auditlog.Actor{User: principal(c), Addr: c.RealIP()}, err, patient, studies...)
}

// respondCorrection answers a correction made, after recording it.
func (s *Server) respondCorrection(c echo.Context, rec *index.Correction) error {
	v, err := CorrectionOf(rec)
	if err != nil {
		return err
	}
	s.log().Info("correction", "id", rec.ID, "study", rec.Study, "series", rec.Series, "target", rec.Target,
		"reason", rec.Reason, "by", rec.Principal, "undoes", rec.Undoes)
	s.resend(c.Request().Context(), rec)
	return c.JSON(http.StatusOK, v)
}

// resend queues what a correction changed again for the destinations
// that had it already, so that their copies do not diverge: the study
// corrected, or the series moved. Destinations still waiting for it get
// the corrected data sets anyway, as the archive serves them.
func (s *Server) resend(ctx context.Context, rec *index.Correction) {
	if s.Queue == nil || len(s.Destinations) == 0 {
		return
	}
	names := make([]string, len(s.Destinations))
	for i, d := range s.Destinations {
		names[i] = d.Name
	}
	dests, n, err := Resend(ctx, s.Queue, s.Index, names, rec)
	if err != nil {
		s.log().Error("corrected study not sent again", "study", rec.Study, "destinations", dests, "err", err)
		return
	}
	if len(dests) == 0 {
		return
	}
	s.log().Info("corrected study queued again", "study", rec.Study, "series", rec.Series, "destinations", dests, "instances", n)
	if s.Wake != nil {
		s.Wake(dests...)
	}
}

// Resend queues the study a correction changed (or the series it moved)
// again for those of destinations that had it already, so that their
// copies do not diverge. It returns those destinations and how many
// instances it queued. pacsd correct uses it as the API does.
func Resend(ctx context.Context, q route.Queue, f route.Finder, destinations []string, rec *index.Correction) ([]string, int, error) {
	study, series, had := rec.Study, "", []string{rec.Study}
	if rec.Series != "" {
		study, series, had = rec.Target, rec.Series, []string{rec.Study, rec.Target}
	}
	var dests []string
	for _, d := range destinations {
		for _, st := range had {
			tasks, err := q.Tasks(ctx, route.TaskQuery{Destination: d, Study: st, State: route.Done, Limit: 1})
			if err != nil {
				return dests, 0, fmt.Errorf("destination %s: %w", d, err)
			}
			if len(tasks) > 0 {
				dests = append(dests, d)
				break
			}
		}
	}
	if len(dests) == 0 {
		return nil, 0, nil
	}
	n, err := route.Send(ctx, q, f, study, series, dests)
	return dests, n, err
}

func (s *Server) postStudyUpdate(c echo.Context) error {
	study := c.Param("study")
	if err := uid.Valid(study); err != nil {
		return errorf(http.StatusBadRequest, "study: "+err.Error())
	}
	attrs, bodyReason, err := ParseCorrection(c.Request().Body)
	if err != nil {
		return errorf(http.StatusBadRequest, err.Error())
	}
	reason, err := reasonOf(c, bodyReason)
	if err != nil {
		return err
	}
	if err := s.allowStudy(c.Request().Context(), study); err != nil {
		return err
	}
	rec, err := s.Corrections.Correct(c.Request().Context(), &index.Correction{Study: study, After: attrs, Reason: reason, Principal: principal(c)})
	s.audit(c, rec, err, study)
	if err != nil {
		return err
	}
	return s.respondCorrection(c, rec)
}

func (s *Server) postSeriesMove(c echo.Context) error {
	series := c.Param("series")
	if err := uid.Valid(series); err != nil {
		return errorf(http.StatusBadRequest, "series: "+err.Error())
	}
	var body struct {
		Study  string `json:"study"`
		Reason string `json:"reason"`
	}
	if err := readJSON(c, &body); err != nil {
		return err
	}
	if err := uid.Valid(body.Study); err != nil {
		return errorf(http.StatusBadRequest, "study: "+err.Error())
	}
	reason, err := reasonOf(c, body.Reason)
	if err != nil {
		return err
	}
	if err := s.allowSeries(c.Request().Context(), series); err != nil {
		return err
	}
	if err := s.allowStudy(c.Request().Context(), body.Study); err != nil {
		return err
	}
	rec, err := s.Corrections.MoveSeries(c.Request().Context(), &index.Correction{Series: series, Target: body.Study, Reason: reason, Principal: principal(c)})
	from := body.Study
	if rec != nil {
		from = rec.Study
	}
	s.audit(c, rec, err, from)
	if err != nil {
		return err
	}
	return s.respondCorrection(c, rec)
}

func (s *Server) getCorrections(c echo.Context) error {
	study := c.QueryParam("study")
	if err := uid.Valid(study); err != nil {
		return errorf(http.StatusBadRequest, "study: "+err.Error())
	}
	if err := s.allowStudy(c.Request().Context(), study); err != nil {
		return err
	}
	list, err := s.Corrections.Corrections(c.Request().Context(), study)
	if err != nil {
		return err
	}
	out := []CorrectionView{}
	for _, rec := range list {
		v, err := CorrectionOf(rec)
		if err != nil {
			return err
		}
		out = append(out, v)
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) postUndo(c echo.Context) error {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return errorf(http.StatusBadRequest, "id: not a correction's number")
	}
	var body struct {
		Reason string `json:"reason"`
	}
	if err := readJSON(c, &body); err != nil {
		return err
	}
	reason, err := reasonOf(c, body.Reason)
	if err != nil {
		return err
	}
	if p, ok := auth.FromContext(c.Request().Context()); ok && p.Issuers != nil {
		was, err := s.Corrections.Correction(c.Request().Context(), id)
		if err != nil {
			return err
		}
		for _, st := range []string{was.Study, was.Target} {
			if st == "" {
				continue
			}
			if err := s.allowStudy(c.Request().Context(), st); err != nil {
				return err
			}
		}
	}
	rec, err := s.Corrections.Undo(c.Request().Context(), id, reason, principal(c))
	if rec != nil {
		s.audit(c, rec, err, rec.Study)
	}
	if err != nil {
		return err
	}
	return s.respondCorrection(c, rec)
}

// getOriginal answers the object of an instance as it was received: the
// data set's bytes unchanged, behind the File Meta Information the
// archive wrote, whatever corrections say of it.
func (s *Server) getOriginal(c echo.Context) error {
	sop := c.Param("sop")
	if err := uid.Valid(sop); err != nil {
		return errorf(http.StatusBadRequest, "sop: "+err.Error())
	}
	ctx := c.Request().Context()
	in, err := s.Originals.Instance(ctx, sop)
	if err != nil {
		return err
	}
	if err := s.allowStudy(ctx, in.StudyInstanceUID); err != nil {
		return err
	}
	obj, err := s.Originals.Open(ctx, in)
	if err != nil {
		return err
	}
	defer obj.Close()
	h := c.Response().Header()
	h.Set(echo.HeaderContentLength, strconv.FormatInt(obj.Size(), 10))
	// A rebuilt original (archive compression) is not the object the
	// index's SHA-256 names; it says its own.
	etag := in.SHA256
	if o, ok := obj.(interface{ SHA256() string }); ok && o.SHA256() != "" {
		etag = o.SHA256()
	}
	h.Set("ETag", strconv.Quote(etag))
	h.Set(echo.HeaderContentDisposition, "attachment; filename="+strconv.Quote(sop+".dcm"))
	return c.Stream(http.StatusOK, "application/dicom", obj)
}
