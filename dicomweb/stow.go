package dicomweb

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
)

// Failure and warning reasons of a STOW-RS response (PS3.18 §10.5.3.1,
// which takes them from the C-STORE statuses of PS3.4 B.2.3).
const (
	reasonProcessingFailure = 0x0110
	reasonDuplicate         = 0x0111
	reasonClassNotSupported = 0x0122
	reasonNotAuthorized     = 0x0124
	reasonOutOfResources    = 0xA700
	reasonMismatch          = 0xA900
	reasonCannotUnderstand  = 0xC000
	reasonElementsDiscarded = 0xB007
)

// stowResult collects the outcome of each part of a STOW-RS request; parts
// finish concurrently.
type stowResult struct {
	mu             sync.Mutex
	stored, failed []*dicom.Dataset
	unavailable    bool
	studies        map[string]bool
}

func (r *stowResult) fail(item *dicom.Dataset) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = append(r.failed, item)
}

func (r *stowResult) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.stored) + len(r.failed)
}

// store answers a STOW-RS request: each part of the multipart body is
// handed to the archive as it is read, so a body of any size passes
// through bounded memory.
func (s *Server) store(c echo.Context) error {
	r := c.Request()
	r.Body = http.MaxBytesReader(c.Response(), r.Body, s.maxBody())
	mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return errorf(http.StatusUnsupportedMediaType, "Content-Type %q: %v", r.Header.Get("Content-Type"), err)
	}
	study := c.Param("study")
	if study != "" {
		if err := uid.Valid(study); err != nil {
			return errorf(http.StatusBadRequest, "study %q: %v", study, err)
		}
	}
	asXML, err := negotiateStow(r)
	if err != nil {
		return err
	}
	base := s.baseURL(r)
	res := &stowResult{studies: map[string]bool{}}
	switch {
	case mediaType == "application/dicom":
		if err := s.storePart(c, r.Body, study, base, res); err != nil {
			return err
		}
	case mediaType == "multipart/related":
		if t := strings.ToLower(params["type"]); t != "" && t != "application/dicom" {
			return errorf(http.StatusUnsupportedMediaType, "multipart/related type %q: pacsd stores application/dicom parts only (no DICOM JSON or XML with bulk data)", params["type"])
		}
		if params["boundary"] == "" {
			return errorf(http.StatusBadRequest, "multipart/related without a boundary")
		}
		if err := s.storeParts(c, multipart.NewReader(r.Body, params["boundary"]), study, base, res); err != nil {
			return err
		}
	default:
		return errorf(http.StatusUnsupportedMediaType, `Content-Type %q: STOW-RS takes multipart/related; type="application/dicom" or application/dicom`, mediaType)
	}
	return s.stowResponse(c, res, study, base, asXML)
}

// negotiateStow says whether a STOW-RS request wants its response in XML
// (application/dicom+xml, the Native DICOM Model of PS3.19) rather than
// DICOM JSON. It is decided before anything is stored.
func negotiateStow(r *http.Request) (asXML bool, err error) {
	a := accepted(r)
	for _, m := range a.ranges {
		switch {
		case m.typ == "application/dicom+xml" || m.typ == "application/xml":
			return true, nil
		case m.matches("application/dicom+json") || m.typ == "application/json":
			return false, nil
		}
	}
	return false, errorf(http.StatusNotAcceptable, "the response of STOW-RS is available as application/dicom+json or application/dicom+xml; %s", a)
}

// stowPipeline is how many parts of one request may be in the archive at
// once: a part is read from the body in full before the next, but the
// fsyncs and index commit that make it durable overlap with reading the
// next ones. The response waits for all of them.
const stowPipeline = 4

// storeParts archives the parts of a multipart body in turn, each handed
// to the archive as it is read.
func (s *Server) storeParts(c echo.Context, mr *multipart.Reader, study, base string, res *stowResult) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, stowPipeline)
	var fatal error
	var mu sync.Mutex
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			if tooLarge(err) {
				return err
			}
			wg.Wait()
			if res.count() == 0 {
				return errorf(http.StatusBadRequest, "multipart body: %v", err)
			}
			// Parts before the break are stored and must be
			// reported; the client learns the rest failed.
			res.fail(failedItem("", "", reasonCannotUnderstand))
			s.log().Warn("STOW-RS body broken after some parts", "err", err)
			break
		}
		ct := p.Header.Get("Content-Type")
		if pt, _, _ := mime.ParseMediaType(ct); ct != "" && pt != "application/dicom" {
			res.fail(failedItem("", "", reasonClassNotSupported))
			s.log().Warn("STOW-RS part refused", "content_type", ct)
			p.Close()
			continue
		}
		sem <- struct{}{}
		body := newPartReader(p)
		wg.Go(func() {
			defer func() { <-sem }()
			err := s.storePart(c, body, study, base, res)
			body.release()
			if err != nil {
				mu.Lock()
				fatal = err
				mu.Unlock()
			}
		})
		// The next part may be read once this one has been read to
		// its end, or the archive has stopped reading it.
		<-body.done
		mu.Lock()
		err = fatal
		mu.Unlock()
		if err != nil {
			return err
		}
	}
	wg.Wait()
	return fatal
}

// partReader reads a part for the archive and says when the part is
// done with: read to its end or to an error, or released by the archive.
// After that it never reads the part again, so the multipart reader may
// move on to the next part while the archive finishes this one.
type partReader struct {
	mu   sync.Mutex
	r    io.Reader
	err  error
	done chan struct{}
}

func newPartReader(r io.Reader) *partReader { return &partReader{r: r, done: make(chan struct{})} }

func (p *partReader) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return 0, p.err
	}
	n, err := p.r.Read(b)
	if err != nil {
		p.err = err
		close(p.done)
	}
	return n, err
}

// release ends the part for the archive, if it has not ended.
func (p *partReader) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = errReleased
		close(p.done)
	}
}

var errReleased = errors.New("dicomweb: part released")

// storePart archives one Part-10 object. It returns an error only when
// the whole request must fail: the body exceeds the limit.
func (s *Server) storePart(c echo.Context, body io.Reader, study, base string, res *stowResult) error {
	br := part10(bufio.NewReaderSize(body, 64<<10))
	fm, _, err := dicom.ReadFileMeta(br)
	if err != nil {
		if tooLarge(err) {
			return err
		}
		res.fail(failedItem("", "", reasonCannotUnderstand))
		s.log().Warn("STOW-RS part is not a DICOM file", "err", err)
		return nil
	}
	r, err := s.Archive.Store(c.Request().Context(), &archive.StoreRequest{
		SOPClassUID:       fm.MediaStorageSOPClassUID,
		SOPInstanceUID:    fm.MediaStorageSOPInstanceUID,
		StudyInstanceUID:  study,
		TransferSyntaxUID: fm.TransferSyntaxUID,
		CalledAE:          s.AETitle,
		// Nobody signs in to STOW-RS yet: every client is the same
		// source to the duplicate policy.
		Source:  archive.SourceSTOW,
		Dataset: br,
	})
	if err != nil {
		if tooLarge(err) {
			return err
		}
		reason := reasonProcessingFailure
		switch {
		case errors.Is(err, archive.ErrMismatch):
			reason = reasonMismatch
		case errors.Is(err, archive.ErrInvalid):
			reason = reasonCannotUnderstand
		case errors.Is(err, archive.ErrDuplicate):
			reason = reasonDuplicate
		case errors.Is(err, archive.ErrRejected), errors.Is(err, archive.ErrRefused):
			reason = reasonNotAuthorized
		case errors.Is(err, archive.ErrUnavailable):
			reason = reasonOutOfResources
			res.mu.Lock()
			res.unavailable = true
			res.mu.Unlock()
		}
		res.fail(failedItem(fm.MediaStorageSOPClassUID, fm.MediaStorageSOPInstanceUID, reason))
		s.log().Warn("STOW-RS instance not stored", "sop_instance_uid", fm.MediaStorageSOPInstanceUID, "reason", fmt.Sprintf("%04X", reason), "err", err)
		return nil
	}
	in := r.Instance
	item := &dicom.Dataset{Elements: []dicom.Element{
		{Tag: tag.ReferencedSOPClassUID, VR: "UI", Values: []string{in.SOPClassUID}},
		{Tag: tag.ReferencedSOPInstanceUID, VR: "UI", Values: []string{in.SOPInstanceUID}},
		{Tag: tag.RetrieveURL, VR: "UR", Values: []string{instanceURL(base, in.StudyInstanceUID, in.SeriesInstanceUID, in.SOPInstanceUID)}},
	}}
	if r.Warning != nil {
		item.Elements = append(item.Elements, dicom.Element{Tag: tag.WarningReason, VR: "US", Values: []string{strconv.Itoa(reasonElementsDiscarded)}})
	}
	res.mu.Lock()
	res.stored = append(res.stored, item)
	res.studies[in.StudyInstanceUID] = true
	res.mu.Unlock()
	return nil
}

// part10 returns a reader of a Part-10 file that may lack its 128-byte
// preamble and "DICM": writers such as pydicom 3 without
// enforce_file_format start with the File Meta Information at byte 0,
// which PS3.10 §7.1 does not allow but is unambiguous to read.
func part10(br *bufio.Reader) *bufio.Reader {
	head, _ := br.Peek(132)
	if len(head) == 132 && string(head[128:]) == "DICM" {
		return br
	}
	var missing []byte
	switch {
	case len(head) >= 4 && string(head[:4]) == "DICM":
		missing = make([]byte, 128)
	case len(head) >= 8 && head[0] == 0x02 && head[1] == 0x00 && isVR(head[4:6]):
		// An element of group 0002, in explicit VR little endian as
		// File Meta Information always is.
		missing = append(make([]byte, 128), "DICM"...)
	default:
		return br
	}
	return bufio.NewReaderSize(io.MultiReader(bytes.NewReader(missing), br), 64<<10)
}

func isVR(b []byte) bool {
	return len(b) == 2 && 'A' <= b[0] && b[0] <= 'Z' && 'A' <= b[1] && b[1] <= 'Z'
}

func tooLarge(err error) bool {
	var mb *http.MaxBytesError
	return errors.As(err, &mb)
}

func failedItem(class, instance string, reason int) *dicom.Dataset {
	return &dicom.Dataset{Elements: []dicom.Element{
		{Tag: tag.FailureReason, VR: "US", Values: []string{strconv.Itoa(reason)}},
		{Tag: tag.ReferencedSOPClassUID, VR: "UI", Values: nonEmpty(class)},
		{Tag: tag.ReferencedSOPInstanceUID, VR: "UI", Values: nonEmpty(instance)},
	}}
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// stowResponse answers with the Store Instances Response Module (PS3.18
// §10.5.3.2): 200 when every instance was stored, 202 when some were or
// were stored with warnings, 409 when none was, 503 when none was for
// want of storage.
func (s *Server) stowResponse(c echo.Context, res *stowResult, study, base string, asXML bool) error {
	ds := &dicom.Dataset{}
	if study == "" && len(res.studies) == 1 {
		for st := range res.studies {
			study = st
		}
	}
	if study != "" && len(res.stored) > 0 {
		ds.Elements = append(ds.Elements, dicom.Element{Tag: tag.RetrieveURL, VR: "UR", Values: []string{studyURL(base, study)}})
	}
	if len(res.failed) > 0 {
		ds.Elements = append(ds.Elements, dicom.Element{Tag: tag.FailedSOPSequence, VR: "SQ", Items: res.failed})
	}
	if len(res.stored) > 0 {
		ds.Elements = append(ds.Elements, dicom.Element{Tag: tag.ReferencedSOPSequence, VR: "SQ", Items: res.stored})
	}
	status := http.StatusOK
	warned := false
	for _, it := range res.stored {
		if _, ok := it.Find(tag.WarningReason); ok {
			warned = true
		}
	}
	switch {
	case len(res.stored) == 0 && res.unavailable:
		status = http.StatusServiceUnavailable
		c.Response().Header().Set("Retry-After", "10")
	case len(res.stored) == 0:
		status = http.StatusConflict
		if len(res.failed) == 0 {
			return errorf(http.StatusBadRequest, "the request holds no instance")
		}
	case len(res.failed) > 0 || warned:
		status = http.StatusAccepted
	}
	if asXML {
		return c.Blob(status, "application/dicom+xml", appendXML(nil, ds))
	}
	return c.Blob(status, "application/dicom+json", ds.AppendJSON(nil, dicom.JSONOptions{}))
}
