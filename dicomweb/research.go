package dicomweb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/deid"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/codec"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
)

// Research serves callers whose access is limited to de-identified
// copies, such as principals with only the research scope. For them
// searches answer de-identified matches under pseudonymous UIDs, and
// retrievals of objects, metadata, frames and rendered images take those
// UIDs and answer de-identified copies; the original UIDs name nothing.
// Instances with burned-in annotation (0028,0301 YES) are left out. Every
// other service answers them 403.
type Research struct {
	// Only reports whether the caller of a request may have
	// de-identified copies only.
	Only func(ctx context.Context) bool
	// Deidentifier makes the copies. Its MappingStore must be what
	// Originals reads, so that the UIDs a search answers can be
	// retrieved.
	Deidentifier *deid.Deidentifier
	// Originals finds the original of a pseudonymous UID or patient ID.
	Originals deid.Reidentifier
	// Inspect, if set, reads the metadata of an instance a search
	// matches, to leave out one with burned-in annotation, where the
	// index does not say; it is not a retrieval, and need not be
	// audited as one. Archive.Metadata when nil.
	Inspect func(ctx context.Context, in *index.Instance) (*archive.Metadata, error)
	// Refused, if set, is told of each request refused because the
	// service does not serve de-identified copies, for the audit trail.
	Refused func(r *http.Request, why string)
}

// researching reports whether c's caller gets de-identified copies only.
func (s *Server) researching(c echo.Context) bool {
	return s.Research != nil && s.Research.Only != nil && s.Research.Only(c.Request().Context())
}

// researchRoutes are the services that serve de-identified copies.
var researchRoutes = map[string]bool{
	"/studies": true, "/series": true, "/instances": true,
	"/studies/:study/series": true, "/studies/:study/instances": true,
	"/studies/:study/series/:series/instances": true,
	"/studies/:study":                          true, "/studies/:study/series/:series": true,
	"/studies/:study/series/:series/instances/:instance":                         true,
	"/studies/:study/metadata":                                                   true,
	"/studies/:study/series/:series/metadata":                                    true,
	"/studies/:study/series/:series/instances/:instance/metadata":                true,
	"/studies/:study/series/:series/instances/:instance/frames/:frames":          true,
	"/studies/:study/series/:series/instances/:instance/rendered":                true,
	"/studies/:study/series/:series/instances/:instance/frames/:frames/rendered": true,
}

// pixelRoutes serve pixel data, which de-identification leaves as it is:
// only the check for burned-in annotation stands between them and the
// caller.
var pixelRoutes = map[string]bool{
	"/studies/:study/series/:series/instances/:instance/frames/:frames":          true,
	"/studies/:study/series/:series/instances/:instance/rendered":                true,
	"/studies/:study/series/:series/instances/:instance/frames/:frames/rendered": true,
}

// researchGate refuses research callers the services that do not serve
// de-identified copies (bulk data, thumbnails, WADO-URI, storing,
// deleting), and checks pixel requests for burned-in annotation.
func (s *Server) researchGate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !s.researching(c) {
			return next(c)
		}
		route := strings.TrimPrefix(c.Path(), s.root())
		r := c.Request()
		if r.Method == http.MethodOptions {
			return next(c)
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead || !researchRoutes[route] {
			why := "the research scope gives de-identified copies only, which " + r.Method + " " + c.Path() + " does not serve"
			if s.Research.Refused != nil {
				s.Research.Refused(r, why)
			}
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="pacsd", error="insufficient_scope", scope="read"`)
			return s.handle(func(echo.Context) error { return errorf(http.StatusForbidden, "insufficient scope: %s", why) })(c)
		}
		if pixelRoutes[route] {
			return s.handle(func(c echo.Context) error {
				if err := s.checkPixels(c); err != nil {
					return err
				}
				return next(c)
			})(c)
		}
		return next(c)
	}
}

// researchKey holds, in a research request's context, the instances its
// pseudonymous UIDs name, once found.
const researchKey = "pacsd.research.instances"

// checkPixels finds the instance a frames or rendered request of a
// research caller names, and refuses it if it has burned-in annotation.
func (s *Server) checkPixels(c echo.Context) error {
	ins, err := s.instances(c)
	if err != nil {
		return err
	}
	md, err := s.Archive.Metadata(c.Request().Context(), ins[0])
	if err != nil {
		return err
	}
	ds, err := dicom.ParseJSON(md.JSON)
	if err != nil {
		return fmt.Errorf("metadata of %s: %w", ins[0].SOPInstanceUID, err)
	}
	if burnedIn(ds) {
		return errorf(http.StatusNotFound, "image %s has burned-in annotation and is not available de-identified", c.Param("instance"))
	}
	return nil
}

// burnedInMatch reports whether the instance of a search's match has
// burned-in annotation, by its metadata: the index does not keep the
// attribute.
func (s *Server) burnedInMatch(ctx context.Context, ds *dicom.Dataset) (bool, error) {
	ins, err := s.lookup(ctx, ds.First(tag.StudyInstanceUID), ds.First(tag.SeriesInstanceUID), ds.First(tag.SOPInstanceUID))
	if err != nil || len(ins) == 0 {
		return false, err
	}
	inspect := s.Research.Inspect
	if inspect == nil {
		inspect = s.Archive.Metadata
	}
	md, err := inspect(ctx, ins[0])
	if err != nil {
		return false, err
	}
	md0, err := dicom.ParseJSON(md.JSON)
	if err != nil {
		return false, fmt.Errorf("metadata of a match: %w", err)
	}
	return burnedIn(md0), nil
}

func burnedIn(ds *dicom.Dataset) bool {
	return strings.EqualFold(strings.TrimSpace(ds.First(tag.BurnedInAnnotation)), "YES")
}

// researchInstances returns the instances a research request's
// pseudonymous UIDs name: each is mapped back to its original, and one
// that is not a pseudonym names nothing.
func (s *Server) researchInstances(c echo.Context) ([]*index.Instance, error) {
	if ins, ok := c.Get(researchKey).([]*index.Instance); ok {
		return ins, nil
	}
	ctx := c.Request().Context()
	var originals [3]string
	pseudonyms := [3]string{c.Param("study"), c.Param("series"), c.Param("instance")}
	unmapped := false
	for i, p := range pseudonyms {
		if p == "" {
			continue
		}
		if err := uid.Valid(p); err != nil {
			return nil, errorf(http.StatusBadRequest, "%s %q: %v", [3]string{"study", "series", "instance"}[i], p, err)
		}
		o, found, err := s.Research.Originals.Original(ctx, deid.KindUID, p)
		if err != nil {
			return nil, fmt.Errorf("original of %s: %w", p, err)
		}
		switch {
		case found:
			originals[i] = o
		case i == 0:
			return nil, errorf(http.StatusNotFound, "no study %s among the de-identified data", p)
		default:
			unmapped = true
		}
	}
	var ins []*index.Instance
	var err error
	if unmapped {
		// A series or instance whose pseudonym no copy has told yet
		// (a search at the study level tells only the study's): it is
		// found among the study's by its pseudonym.
		all, err := s.lookup(ctx, originals[0], "", "")
		if err != nil {
			return nil, err
		}
		d := s.Research.Deidentifier
		for _, in := range all {
			if (pseudonyms[1] == "" || d.UID(in.SeriesInstanceUID) == pseudonyms[1]) && (pseudonyms[2] == "" || d.UID(in.SOPInstanceUID) == pseudonyms[2]) {
				ins = append(ins, in)
			}
		}
	} else if ins, err = s.lookup(ctx, originals[0], originals[1], originals[2]); err != nil {
		return nil, err
	}
	if len(ins) == 0 {
		return nil, errorf(http.StatusNotFound, "nothing among the de-identified data under %s", c.Request().URL.Path)
	}
	c.Set(researchKey, ins)
	return ins, nil
}

// pseudonymize replaces in an error's reason the original UIDs of a
// research request's instances by their pseudonyms, so that an error
// does not tell them.
func (s *Server) pseudonymize(c echo.Context, reason string) string {
	ins, _ := c.Get(researchKey).([]*index.Instance)
	d := s.Research.Deidentifier
	for _, in := range ins {
		for _, u := range []string{in.StudyInstanceUID, in.SeriesInstanceUID, in.SOPInstanceUID} {
			if u != "" {
				reason = strings.ReplaceAll(reason, u, d.UID(u))
			}
		}
	}
	return reason
}

// researchQuery makes q, a search of a research caller, a search of the
// originals: pseudonymous UIDs and patient IDs among its matching keys
// become the originals, and a key the profile does not keep (a name, a
// date) is refused, since matching on it would tell what the copies
// hide. The patient's ID and its issuer are asked for, on which the
// pseudonyms and the shift of dates depend.
func (s *Server) researchQuery(ctx context.Context, q *index.Query) error {
	d, originals := s.Research.Deidentifier, s.Research.Originals
	profile := d.Profile()
	var issuer string
	for i := range q.Identifier.Elements {
		e := &q.Identifier.Elements[i]
		if !hasMatchingValue(e) {
			continue
		}
		switch e.Tag {
		case tag.StudyInstanceUID, tag.SeriesInstanceUID, tag.SOPInstanceUID:
			var mapped []string
			for _, v := range e.Values {
				o, found, err := originals.Original(ctx, deid.KindUID, v)
				if err != nil {
					return fmt.Errorf("original of %s: %w", v, err)
				}
				if found {
					mapped = append(mapped, o)
				}
			}
			if len(mapped) == 0 {
				return errNoMatch
			}
			e.Values = mapped
		case tag.PatientID:
			if len(e.Values) != 1 || strings.ContainsAny(e.Values[0], "*?") {
				return errorf(http.StatusBadRequest, "PatientID: a search of de-identified data matches one pseudonymous patient ID, without wildcards")
			}
			o, found, err := originals.Original(ctx, deid.KindPatient, e.Values[0])
			if err != nil {
				return fmt.Errorf("original of patient %s: %w", e.Values[0], err)
			}
			if !found {
				return errNoMatch
			}
			id, iss, _ := strings.Cut(o, "^^^")
			e.Values, issuer = []string{id}, iss
		default:
			if !profile.Keeps(e.Tag) || e.VR == "SQ" {
				return errorf(http.StatusBadRequest, "%s: a search of de-identified data cannot match on an attribute the de-identification removes or changes", keyword(e.Tag))
			}
		}
	}
	set(q.Identifier, dicom.Element{Tag: tag.IssuerOfPatientID, VR: "LO", Values: nonEmpty(issuer)})
	if _, ok := q.Identifier.Find(tag.PatientID); !ok {
		set(q.Identifier, dicom.Element{Tag: tag.PatientID, VR: "LO"})
	}
	return nil
}

// hasMatchingValue reports whether e is a matching key rather than a
// return key: it has a value, or items with values.
func hasMatchingValue(e *dicom.Element) bool {
	for _, v := range e.Values {
		if v != "" {
			return true
		}
	}
	for _, it := range e.Items {
		for i := range it.Elements {
			if hasMatchingValue(&it.Elements[i]) {
				return true
			}
		}
	}
	return false
}

// deidentified de-identifies the matches of a research caller's search,
// leaving out those with burned-in annotation.
func (s *Server) deidentified(ctx context.Context, level index.Level, matches iter.Seq2[*dicom.Dataset, error]) iter.Seq2[*dicom.Dataset, error] {
	return func(yield func(*dicom.Dataset, error) bool) {
		for ds, err := range matches {
			if err != nil {
				yield(nil, err)
				return
			}
			if level == index.ImageLevel {
				burned, err := s.burnedInMatch(ctx, ds)
				if err != nil {
					yield(nil, err)
					return
				}
				if burned {
					continue
				}
			}
			out, _, err := s.Research.Deidentifier.Header(ctx, ds)
			if errors.Is(err, deid.ErrBurnedIn) {
				continue
			}
			if err != nil {
				yield(nil, fmt.Errorf("de-identify a match: %w", err))
				return
			}
			sortElements(out)
			if !yield(out, nil) {
				return
			}
		}
	}
}

// researchRetrieve answers a WADO-RS retrieve of a research caller: each
// instance de-identified as it streams from storage, under its
// pseudonymous UIDs, those with burned-in annotation left out.
func (s *Server) researchRetrieve(c echo.Context, ins []*index.Instance, targets []codec.Choice, single bool) error {
	ctx := c.Request().Context()
	resp := c.Response()
	d := s.Research.Deidentifier
	base := s.baseURL(c.Request())
	if single {
		err := s.sendDeidentified(ctx, ins[0], targets[0], func() (io.Writer, error) {
			resp.Header().Set("Content-Type", "application/dicom; transfer-syntax="+targets[0].TransferSyntax)
			resp.WriteHeader(http.StatusOK)
			return resp, nil
		})
		if errors.Is(err, deid.ErrBurnedIn) {
			return errorf(http.StatusNotFound, "image %s has burned-in annotation and is not available de-identified", c.Param("instance"))
		}
		return err
	}
	mw := multipart.NewWriter(resp)
	for i, in := range ins {
		err := s.sendDeidentified(ctx, in, targets[i], func() (io.Writer, error) {
			if !resp.Committed {
				resp.Header().Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
				resp.WriteHeader(http.StatusOK)
			}
			h := textproto.MIMEHeader{}
			h.Set("Content-Type", "application/dicom; transfer-syntax="+targets[i].TransferSyntax)
			h.Set("Content-Location", instanceURL(base, d.UID(in.StudyInstanceUID), d.UID(in.SeriesInstanceUID), d.UID(in.SOPInstanceUID)))
			return mw.CreatePart(h)
		})
		if errors.Is(err, deid.ErrBurnedIn) {
			continue
		}
		if err != nil {
			return err
		}
	}
	if !resp.Committed {
		return errorf(http.StatusNotFound, "every image of %s has burned-in annotation: none is available de-identified", c.Request().URL.Path)
	}
	return mw.Close()
}

// sendDeidentified writes the de-identified copy of an instance, as a
// Part-10 object in the syntax of target, to the writer open returns.
// open is called when the copy's header is ready; an instance with
// burned-in annotation is deid.ErrBurnedIn, before open is called.
func (s *Server) sendDeidentified(ctx context.Context, in *index.Instance, target codec.Choice, open func() (io.Writer, error)) error {
	ts, ok := uid.LookupTransferSyntax(target.TransferSyntax)
	switch {
	case !ok:
		return errorf(http.StatusNotAcceptable, "transfer syntax %q is unknown", target.TransferSyntax)
	case ts.Deflated:
		return errorf(http.StatusNotAcceptable, "de-identified copies are not sent in %s: ask for another transfer syntax", uid.Name(ts.UID))
	}
	from := ts.UID
	if s.Codecs != nil {
		from = in.TransferSyntaxUID
	}
	_, data, err := s.Archive.OpenDataset(ctx, in, from)
	if err != nil {
		return err
	}
	defer data.Close()
	sop := in.SOPInstanceUID
	src := io.Reader(data)
	if from != ts.UID {
		opts := codec.TranscodeOptions{}
		if target.NewInstance {
			opts.SOPInstanceUID = codec.LossyInstanceUID(in.SOPInstanceUID, ts.UID)
			sop = opts.SOPInstanceUID
		}
		pr, pw := io.Pipe()
		defer pr.Close()
		go func() {
			_, err := s.Codecs.Transcode(ctx, pw, data, from, ts.UID, opts)
			pw.CloseWithError(err)
		}()
		src = pr
	}
	fm := dicom.FileMeta{
		MediaStorageSOPClassUID:    in.SOPClassUID,
		MediaStorageSOPInstanceUID: s.Research.Deidentifier.UID(sop),
		TransferSyntaxUID:          ts.UID,
		ImplementationClassUID:     dicom.ImplementationClassUID,
		ImplementationVersionName:  dicom.ImplementationVersionName,
	}
	w := &openOnWrite{open: open, meta: dicom.AppendFileMeta(nil, fm)}
	res, err := s.Research.Deidentifier.Rewrite(ctx, w, src, ts)
	switch {
	case errors.Is(err, deid.ErrBurnedIn) && w.w == nil:
		return err
	case err != nil && w.w == nil:
		return fmt.Errorf("de-identify %s: %w", in.SOPInstanceUID, err)
	case err != nil:
		return fmt.Errorf("send %s: %w", in.SOPInstanceUID, err)
	case res.Replaced.SOPInstanceUID != fm.MediaStorageSOPInstanceUID:
		return fmt.Errorf("send %s: de-identified as %s, not %s", in.SOPInstanceUID, res.Replaced.SOPInstanceUID, fm.MediaStorageSOPInstanceUID)
	}
	return nil
}

// openOnWrite opens its writer on the first write and writes the File
// Meta Information to it first.
type openOnWrite struct {
	open func() (io.Writer, error)
	meta []byte
	w    io.Writer
}

func (o *openOnWrite) Write(p []byte) (int, error) {
	if o.w == nil {
		w, err := o.open()
		if err != nil {
			return 0, err
		}
		if _, err := w.Write(o.meta); err != nil {
			return 0, err
		}
		o.w = w
	}
	return o.w.Write(p)
}

// researchMetadata answers a WADO-RS metadata request of a research
// caller: the de-identified header of each instance, without bulk data
// URIs, those with burned-in annotation left out.
func (s *Server) researchMetadata(c echo.Context, ins []*index.Instance, etag string) error {
	ctx := c.Request().Context()
	var w *jsonWriter
	defer func() {
		if w != nil {
			w.Close()
		}
	}()
	n := 0
	for _, in := range ins {
		md, err := s.Archive.Metadata(ctx, in)
		if err != nil {
			return err
		}
		ds, err := dicom.ParseJSON(md.JSON)
		if err != nil {
			return fmt.Errorf("metadata of %s: %w", in.SOPInstanceUID, err)
		}
		out, _, err := s.Research.Deidentifier.Header(ctx, ds)
		if errors.Is(err, deid.ErrBurnedIn) {
			continue
		}
		if err != nil {
			return fmt.Errorf("de-identify the metadata of %s: %w", in.SOPInstanceUID, err)
		}
		sortElements(out)
		if w == nil {
			w = newJSONWriter(c, etag)
			w.WriteString("[")
		}
		if n > 0 {
			w.WriteString(",")
		}
		w.Write(out.AppendJSON(w.buf[:0], dicom.JSONOptions{}))
		if n++; n%64 == 0 {
			w.Flush()
		}
	}
	if w == nil {
		return errorf(http.StatusNotFound, "every image of %s has burned-in annotation: none is available de-identified", c.Request().URL.Path)
	}
	w.WriteString("]")
	return w.Close()
}
