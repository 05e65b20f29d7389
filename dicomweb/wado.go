package dicomweb

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/codec"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
)

// instances returns the records of the instances a WADO-RS path names, in
// the order the archive received them.
func (s *Server) instances(c echo.Context) ([]*index.Instance, error) {
	if s.researching(c) {
		return s.researchInstances(c)
	}
	study, series, instance := c.Param("study"), c.Param("series"), c.Param("instance")
	for _, u := range []struct {
		t tag.Tag
		v string
	}{{tag.StudyInstanceUID, study}, {tag.SeriesInstanceUID, series}, {tag.SOPInstanceUID, instance}} {
		if u.v == "" && u.t != tag.StudyInstanceUID {
			continue
		}
		if err := uid.Valid(u.v); err != nil {
			return nil, errorf(http.StatusBadRequest, "%s %q: %v", keyword(u.t), u.v, err)
		}
	}
	out, err := s.lookup(c.Request().Context(), study, series, instance)
	if err == nil && len(out) == 0 {
		what, which := "study", study
		switch {
		case instance != "":
			what, which = "image", instance
		case series != "":
			what, which = "series", series
		}
		err = errorf(http.StatusNotFound, "no %s %s in the archive", what, which)
	}
	return out, err
}

// lookup returns the records of the instances of a study, of one of its
// series, or the one instance, as the UIDs given name them.
func (s *Server) lookup(ctx context.Context, study, series, instance string) ([]*index.Instance, error) {
	ids := &dicom.Dataset{}
	level := index.StudyLevel
	for _, u := range []struct {
		t     tag.Tag
		v     string
		level index.Level
	}{{tag.StudyInstanceUID, study, index.StudyLevel}, {tag.SeriesInstanceUID, series, index.SeriesLevel}, {tag.SOPInstanceUID, instance, index.ImageLevel}} {
		if u.v != "" {
			ids.Elements = append(ids.Elements, dicom.Element{Tag: u.t, VR: "UI", Values: []string{u.v}})
			level = u.level
		}
	}
	sortElements(ids)
	var out []*index.Instance
	for in, err := range s.Index.FindInstances(ctx, &index.Query{Level: level, Identifier: ids}) {
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// retrieve answers a WADO-RS retrieve of a study, series or instance:
// the Part-10 objects as a multipart/related stream, each read from
// storage as it is sent, and converted on the way when the client asks
// for a syntax other than the stored one.
func (s *Server) retrieve(c echo.Context) error {
	ins, err := s.instances(c)
	if err != nil {
		return err
	}
	want, single, err := negotiateDICOM(c.Request(), c.Param("instance") != "")
	if err != nil {
		return err
	}
	targets := make([]codec.Choice, len(ins))
	for i, in := range ins {
		if targets[i], err = s.choose(in.TransferSyntaxUID, want); err != nil {
			return err
		}
	}
	if s.researching(c) {
		return s.researchRetrieve(c, ins, targets, single)
	}
	if single {
		return s.sendSingle(c, ins[0], targets[0])
	}
	ctx := c.Request().Context()
	resp := c.Response()
	// The status line goes out with the first bytes of the first object,
	// so that storage that cannot serve, or a conversion that fails at
	// once, gets an answer the client can act on (503 with Retry-After,
	// 404, 406), not a 200 cut short. Later objects can only cut the
	// response short, which the client sees as an error too.
	mw := multipart.NewWriter(resp)
	for i, in := range ins {
		err := s.sendObject(ctx, in, targets[i], func(size int64) (io.Writer, error) {
			if !resp.Committed {
				resp.Header().Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
				resp.WriteHeader(http.StatusOK)
			}
			h := textproto.MIMEHeader{}
			h.Set("Content-Type", "application/dicom; transfer-syntax="+targets[i].TransferSyntax)
			// A lossy copy goes by a UID of its own, but what was asked
			// for, and where to ask again, is the stored instance.
			h.Set("Content-Location", instanceURL(s.baseURL(c.Request()), in.StudyInstanceUID, in.SeriesInstanceUID, in.SOPInstanceUID))
			if size >= 0 {
				h.Set("Content-Length", strconv.FormatInt(size, 10))
			}
			return mw.CreatePart(h)
		})
		if err != nil {
			return err
		}
	}
	return mw.Close()
}

// sendSingle answers with one object as an application/dicom body.
func (s *Server) sendSingle(c echo.Context, in *index.Instance, target codec.Choice) error {
	resp := c.Response()
	return s.sendObject(c.Request().Context(), in, target, func(size int64) (io.Writer, error) {
		resp.Header().Set("Content-Type", "application/dicom; transfer-syntax="+target.TransferSyntax)
		if size >= 0 {
			resp.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		}
		resp.WriteHeader(http.StatusOK)
		return resp, nil
	})
}

// negotiateDICOM reads the Accept header of a retrieve of objects: the
// transfer syntax wanted ("" for the default, "*" for as stored) and
// whether the client wants a single application/dicom body rather than a
// multipart one (only for one instance).
func negotiateDICOM(r *http.Request, oneInstance bool) (ts string, single bool, err error) {
	a := accepted(r)
	for _, m := range a.ranges {
		switch {
		case m.typ == "multipart/related" && m.admits("application/dicom"):
			return m.param("transfer-syntax"), false, nil
		case m.typ == "*/*", m.typ == "multipart/*":
			return "", false, nil
		case m.typ == "application/dicom" && oneInstance:
			return m.param("transfer-syntax"), true, nil
		}
	}
	return "", false, errorf(http.StatusNotAcceptable, `objects are available as multipart/related; type="application/dicom" (with transfer-syntax=* for the stored syntax); %s`, a)
}

// sendObject writes an instance's object in the syntax of target, as
// stored or converted, to the writer open returns. open is called once,
// with the size of what follows when it is known (else -1), when the
// object is open and, for a conversion, the first megabyte is ready: a
// conversion that fails before then is an error open never sees.
func (s *Server) sendObject(ctx context.Context, in *index.Instance, target codec.Choice, open func(size int64) (io.Writer, error)) error {
	ts := target.TransferSyntax
	if ts == in.TransferSyntaxUID && in.Amended != nil {
		// An instance with amendments (an issuer given at ingest,
		// corrections) is served with them written over its header.
		fm, data, err := s.Archive.OpenDataset(ctx, in, ts)
		if err != nil {
			return err
		}
		defer data.Close()
		w, err := open(-1)
		if err != nil {
			return err
		}
		if _, err := w.Write(dicom.AppendFileMeta(nil, fm)); err != nil {
			return fmt.Errorf("send %s: %w", in.SOPInstanceUID, err)
		}
		buf := copyBuffers.Get().(*[]byte)
		defer copyBuffers.Put(buf)
		if _, err := io.CopyBuffer(w, struct{ io.Reader }{data}, *buf); err != nil {
			return fmt.Errorf("send %s: %w", in.SOPInstanceUID, err)
		}
		return nil
	}
	if ts == in.TransferSyntaxUID {
		obj, err := s.Archive.Open(ctx, in)
		if err != nil {
			return err
		}
		defer obj.Close()
		w, err := open(obj.Size())
		if err != nil {
			return err
		}
		buf := copyBuffers.Get().(*[]byte)
		defer copyBuffers.Put(buf)
		// Without a WriterTo/ReaderFrom pair io.Copy would copy in 32 KiB
		// steps, each a trip through multipart, chunking and the socket;
		// 1 MiB steps double the throughput and halve the CPU.
		if _, err := io.CopyBuffer(w, struct{ io.Reader }{obj}, *buf); err != nil {
			return fmt.Errorf("send %s: %w", in.SOPInstanceUID, err)
		}
		return nil
	}
	if dicom.Transcodable(ts) && !dicom.Transcodable(in.TransferSyntaxUID) && !target.NewInstance {
		// An instance the archive compressed itself comes back as
		// received; any other is not the archive's to rebuild
		// (dicom.ErrUnsupported), and is decoded below.
		fm, data, err := s.Archive.OpenDataset(ctx, in, ts)
		if err == nil {
			defer data.Close()
			return copyDataset(fm, data, open, in.SOPInstanceUID)
		}
		if !errors.Is(err, dicom.ErrUnsupported) {
			return err
		}
	}
	what := fmt.Sprintf("converting %s from %s to %s", in.SOPInstanceUID, uid.Name(in.TransferSyntaxUID), uid.Name(ts))
	from := ts
	if s.Codecs != nil {
		from = in.TransferSyntaxUID
	}
	fm, data, err := s.Archive.OpenDataset(ctx, in, from)
	if err != nil {
		return err
	}
	defer data.Close()
	hw := &holdWriter{open: func() (io.Writer, error) { return open(-1) }}
	fm.TransferSyntaxUID = ts
	opts := codec.TranscodeOptions{}
	if target.NewInstance {
		opts.SOPInstanceUID = codec.LossyInstanceUID(in.SOPInstanceUID, ts)
		fm.MediaStorageSOPInstanceUID = opts.SOPInstanceUID
	}
	hw.Write(dicom.AppendFileMeta(nil, fm)) // held: cannot fail
	if s.Codecs != nil {
		_, err = s.Codecs.Transcode(ctx, hw, data, from, ts, opts)
	} else {
		_, err = io.Copy(hw, data)
	}
	if err == nil {
		err = hw.Flush()
	}
	if err != nil && !hw.started() {
		return convertError(err, what)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// copyDataset writes a data set behind its File Meta Information to the
// writer open returns.
func copyDataset(fm dicom.FileMeta, data io.Reader, open func(size int64) (io.Writer, error), sop string) error {
	w, err := open(-1)
	if err != nil {
		return err
	}
	if _, err := w.Write(dicom.AppendFileMeta(nil, fm)); err != nil {
		return fmt.Errorf("send %s: %w", sop, err)
	}
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	if _, err := io.CopyBuffer(w, struct{ io.Reader }{data}, *buf); err != nil {
		return fmt.Errorf("send %s: %w", sop, err)
	}
	return nil
}

// copyBuffers hold the buffers objects are copied to responses through.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// metadata answers a WADO-RS metadata request: the DICOM JSON of each
// instance, from what the archive computed at ingest.
func (s *Server) metadata(c echo.Context) error {
	if err := acceptsJSON(c.Request()); err != nil {
		return err
	}
	ins, err := s.instances(c)
	if err != nil {
		return err
	}
	// The objects of an instance never change in place: a replaced
	// instance has another digest, so the digests tag the response.
	h := sha256.New()
	for _, in := range ins {
		fmt.Fprintf(h, "%s %s\n", in.SOPInstanceUID, in.SHA256)
	}
	base := s.baseURL(c.Request())
	h.Write([]byte(base))
	research := s.researching(c)
	if research {
		h.Write([]byte("de-identified"))
	}
	etag := `"` + hex.EncodeToString(h.Sum(nil)[:16]) + `"`
	if match := c.Request().Header.Get("If-None-Match"); match != "" && (match == etag || match == "*" || strings.Contains(match, etag)) {
		c.Response().Header().Set("ETag", etag)
		return c.NoContent(http.StatusNotModified)
	}
	if research {
		return s.researchMetadata(c, ins, etag)
	}
	ctx := c.Request().Context()
	var w *jsonWriter
	defer func() {
		if w != nil {
			w.Close()
		}
	}()
	for i, in := range ins {
		md, err := s.Archive.Metadata(ctx, in)
		if err != nil {
			return err
		}
		if w == nil {
			w = newJSONWriter(c, etag)
			w.WriteString("[")
		}
		if i > 0 {
			w.WriteString(",")
		}
		w.Write(bulkURIs(md.JSON, instanceURL(base, in.StudyInstanceUID, in.SeriesInstanceUID, in.SOPInstanceUID)))
		if i%64 == 63 {
			w.Flush()
		}
	}
	w.WriteString("]")
	return w.Close()
}

// bulkURIs makes the relative BulkDataURIs of stored metadata absolute.
func bulkURIs(doc []byte, instance string) []byte {
	return bytes.ReplaceAll(doc, []byte(`"BulkDataURI":"`+archive.BulkDataPrefix), []byte(`"BulkDataURI":"`+instance+"/"+archive.BulkDataPrefix))
}

// bulkdata answers a bulk data request: a run of bytes of an object,
// as a multipart/related body or, when the client asks for
// application/octet-stream, a plain one. Both honour a Range header of
// one range; the plain one several as well.
func (s *Server) bulkdata(c echo.Context) error {
	ins, err := s.instances(c)
	if err != nil {
		return err
	}
	off, err1 := strconv.ParseInt(c.Param("offset"), 10, 64)
	n, err2 := strconv.ParseInt(c.Param("length"), 10, 64)
	if err1 != nil || err2 != nil || off < 132 || n < 0 {
		return errorf(http.StatusNotFound, "no bulk data at %s/%s", clip(c.Param("offset")), clip(c.Param("length")))
	}
	ctx := c.Request().Context()
	ts, _ := uid.LookupTransferSyntax(ins[0].TransferSyntaxUID)
	if ts.Encapsulated {
		// Compressed Pixel Data is sent as its frames, in their media
		// type or converted (PS3.18 §8.7.3.3).
		md, err := s.Archive.Metadata(ctx, ins[0])
		if err != nil {
			return err
		}
		if pixelDataAt(md, off, n) && len(md.Frames) > 0 {
			list := make([]int, len(md.Frames))
			for i := range list {
				list[i] = i + 1
			}
			return s.sendFrames(c, ins[0], md, list, true)
		}
	}
	multi, err := negotiateBulk(c.Request())
	if err != nil {
		return err
	}
	if ts.Deflated {
		// The object's size says nothing of the inflated data set's,
		// which only inflating it to the end would tell: the run must
		// be one the metadata points at.
		md, err := s.Archive.Metadata(ctx, ins[0])
		if err != nil {
			return err
		}
		if !advertised(md, off, n) {
			return errorf(http.StatusNotFound, "no bulk data at %d/%d of the deflated instance: ask by the BulkDataURIs of its metadata", off, n)
		}
		// Ranges out of order would each inflate it again from its
		// start; the whole run is sent instead, as RFC 9110 allows.
		if strings.Contains(c.Request().Header.Get("Range"), ",") {
			c.Request().Header.Del("Range")
		}
	}
	obj, err := s.Archive.Open(ctx, ins[0])
	if err != nil {
		return err
	}
	defer obj.Close()
	src := valueReader(obj, ts)
	switch {
	case ts.Deflated:
	case off > obj.Size() || n > obj.Size()-off:
		// off+n may overflow; compared this way neither side can.
		return errorf(http.StatusNotFound, "no bulk data at %d/%d: the object has %d bytes", off, n, obj.Size())
	}
	section := io.NewSectionReader(src, off, n)
	if !multi {
		c.Response().Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(c.Response(), c.Request(), "", time.Time{}, section)
		return nil
	}
	body, h := io.Reader(section), textproto.MIMEHeader{}
	if rng := c.Request().Header.Get("Range"); rng != "" {
		start, end, ok := parseRange(rng, n)
		if !ok {
			c.Response().Header().Set("Content-Range", fmt.Sprintf("bytes */%d", n))
			return errorf(http.StatusRequestedRangeNotSatisfiable, "Range %s is not a range of the %d bytes of the bulk data", clip(rng), n)
		}
		if end-start < n {
			body = io.NewSectionReader(section, start, end-start)
			h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end-1, n))
			return sendParts(c, http.StatusPartialContent, "application/octet-stream", []part{{"application/octet-stream", body, h}})
		}
	}
	return sendParts(c, http.StatusOK, "application/octet-stream", []part{{"application/octet-stream", body, h}})
}

// advertised reports whether bytes [off, off+n) of an instance lie within
// a value its metadata points at: a frame's range or a BulkDataURI.
func advertised(md *archive.Metadata, off, n int64) bool {
	within := func(o, l int64) bool { return off >= o && n <= l && off-o <= l-n }
	for _, f := range md.Frames {
		for _, r := range f {
			if within(r.Offset, r.Length) {
				return true
			}
		}
	}
	prefix := []byte(`"BulkDataURI":"` + archive.BulkDataPrefix)
	for doc := md.JSON; ; {
		i := bytes.Index(doc, prefix)
		if i < 0 {
			return false
		}
		doc = doc[i+len(prefix):]
		end := bytes.IndexByte(doc, '"')
		if end < 0 {
			return false
		}
		o, l, ok := bytes.Cut(doc[:end], []byte("/"))
		oo, err1 := strconv.ParseInt(string(o), 10, 64)
		ll, err2 := strconv.ParseInt(string(l), 10, 64)
		if ok && err1 == nil && err2 == nil && within(oo, ll) {
			return true
		}
	}
}

// pixelDataAt reports whether the BulkDataURI of an instance's Pixel Data
// names bytes [off, off+n).
func pixelDataAt(md *archive.Metadata, off, n int64) bool {
	_, rest, ok := bytes.Cut(md.JSON, []byte(`"7FE00010":`))
	if !ok {
		return false
	}
	if end := bytes.IndexByte(rest, '}'); end >= 0 {
		rest = rest[:end] // the element's object
	}
	uri := []byte(`"BulkDataURI":"` + archive.BulkDataPrefix + strconv.FormatInt(off, 10) + "/" + strconv.FormatInt(n, 10) + `"`)
	return bytes.Contains(rest, uri)
}

// negotiateBulk says whether a bulk data request wants a multipart body.
func negotiateBulk(r *http.Request) (multi bool, err error) {
	a := accepted(r)
	for _, m := range a.ranges {
		switch {
		case m.typ == "multipart/related" && m.admits("application/octet-stream"):
			return true, nil
		case m.typ == "application/octet-stream", m.typ == "*/*", m.typ == "application/*":
			return false, nil
		}
	}
	return false, errorf(http.StatusNotAcceptable, `bulk data is available as multipart/related; type="application/octet-stream" or application/octet-stream; %s`, a)
}

// parseRange reads a Range header of one byte range (RFC 9110 §14.1.2)
// of a body of size bytes, and returns it as [start, end). A header of
// several ranges gives the whole body, which a server may send instead.
func parseRange(h string, size int64) (start, end int64, ok bool) {
	spec, found := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, size, true
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false
	}
	if first == "" {
		// The last bytes.
		k, err := strconv.ParseInt(last, 10, 64)
		if err != nil || k <= 0 || size == 0 {
			return 0, 0, false
		}
		return max(size-k, 0), size, true
	}
	start, err := strconv.ParseInt(first, 10, 64)
	if err != nil || start < 0 || start >= size {
		return 0, 0, false
	}
	end = size
	if last != "" {
		l, err := strconv.ParseInt(last, 10, 64)
		if err != nil || l < start {
			return 0, 0, false
		}
		end = min(l, size-1) + 1
	}
	return start, end, true
}

type part struct {
	contentType string
	body        io.Reader
	header      textproto.MIMEHeader // more headers, or nil
}

// sendParts writes a multipart/related response of the given type.
func sendParts(c echo.Context, status int, typ string, parts []part) error {
	mw := multipart.NewWriter(c.Response())
	c.Response().Header().Set("Content-Type", `multipart/related; type="`+typ+`"; boundary=`+mw.Boundary())
	c.Response().WriteHeader(status)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		for k, v := range p.header {
			h[k] = v
		}
		h.Set("Content-Type", p.contentType)
		pw, err := mw.CreatePart(h)
		if err != nil {
			return err
		}
		buf := copyBuffers.Get().(*[]byte)
		_, err = io.CopyBuffer(pw, struct{ io.Reader }{p.body}, *buf)
		copyBuffers.Put(buf)
		if err != nil {
			return err
		}
	}
	return mw.Close()
}
