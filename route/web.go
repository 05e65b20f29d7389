package route

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/storage"
)

// Objects opens the stored objects of archived instances.
type Objects interface {
	// Open opens the object of in: a Part-10 file as received.
	Open(ctx context.Context, in *index.Instance) (storage.Object, error)
	// OpenDataset opens the data set of in as the archive serves it,
	// for an instance with amendments (corrections, an issuer given at
	// ingest), which a destination must get as every other client
	// does.
	OpenDataset(ctx context.Context, in *index.Instance, ts string) (dicom.FileMeta, io.ReadCloser, error)
}

// Web sends to a DICOMweb server by STOW-RS: the study's objects, as
// archived, in multipart/related requests of at most MaxBatchBytes.
type Web struct {
	// Name is the destination's name, for errors.
	Name string
	// URL is the server's DICOMweb root, such as
	// https://pacs.example/dicom-web.
	URL string
	// Token, when not empty, is sent as a bearer token. It never
	// appears in errors or logs.
	Token string
	// Client sends the requests; by default one of the Web's own, with
	// a timeout on the server's answer. A Web must not be copied.
	Client  *http.Client
	Objects Objects
	// Datasets, if set, opens every instance's data set, in its stored
	// syntax, in place of its object: a destination sent de-identified
	// copies gets them from it. An instance it answers ErrNotSendable
	// for is reported refused for good.
	Datasets Datasets
	// MaxBatchBytes bounds a request's objects (default 64 MiB); an
	// object larger goes alone.
	MaxBatchBytes int64
	Limiter       *Limiter
	// Verify counts the study's instances at the server (QIDO-RS)
	// after sending, and reports them sent only if it holds at least as
	// many as it was sent.
	Verify bool
	Logger *slog.Logger

	once sync.Once
	own  *http.Client // when Client is nil
}

var _ Sender = (*Web)(nil)

func (w *Web) client() *http.Client {
	if w.Client != nil {
		return w.Client
	}
	w.once.Do(func() {
		// Give up on a server that sends no answer for ten minutes
		// after a request's last byte; a request's body may take
		// longer.
		w.own = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			ResponseHeaderTimeout: 10 * time.Minute,
			TLSHandshakeTimeout:   30 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   4,
		}}
	})
	return w.own
}

// Address returns the URL without credentials, to show.
func (w *Web) Address() string {
	u, err := url.Parse(w.URL)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	u.RawQuery = ""
	return u.String()
}

// Send implements Sender.
func (w *Web) Send(ctx context.Context, s *Shipment) error {
	limit := w.MaxBatchBytes
	if limit <= 0 {
		limit = 64 << 20
	}
	var stored []*index.Instance
	var failed int
	for start := 0; start < len(s.Instances); {
		end, size := start, int64(0)
		for end < len(s.Instances) && (end == start || size+s.Instances[end].Size <= limit) {
			size += s.Instances[end].Size
			end++
		}
		ok, nfailed, err := w.post(ctx, s, s.Instances[start:end])
		switch {
		case errors.Is(err, errTooLarge) && end-start > 1:
			// Smaller requests from here on, down to one instance.
			limit = max(size/2, 1)
			w.log().Warn("STOW-RS request too large for the destination; sending smaller ones", "destination", w.Name, "bytes", size)
			continue
		case errors.Is(err, errTooLarge):
			// One instance more than the destination takes: no
			// attempt will do better until it takes more.
			s.Report(s.Instances[start].SOPInstanceUID, err.Error())
			start = end
			continue
		case err != nil:
			return err
		}
		stored = append(stored, ok...)
		failed += nfailed
		start = end
	}
	if w.Verify && len(stored) > 0 {
		n, err := w.count(ctx, s.Study)
		if err != nil {
			return err
		}
		if err := confirmCount(s, stored, n, w.Name); err != nil {
			return err
		}
	} else {
		for _, in := range stored {
			s.Report(in.SOPInstanceUID, "")
		}
	}
	if failed > 0 {
		return fmt.Errorf("route: %d of %d instances not stored at %s", failed, len(s.Instances), w.Name)
	}
	return nil
}

func (w *Web) log() *slog.Logger {
	if w.Logger != nil {
		return w.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (w *Web) request(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(w.URL, "/")+path, body)
	if err != nil {
		return nil, fmt.Errorf("route: %s: %w", w.Name, err)
	}
	if w.Token != "" {
		req.Header.Set("Authorization", "Bearer "+w.Token)
	}
	return req, nil
}

// post sends one batch and sorts its instances: those stored, those
// refused for good (reported at once), and a count of those that failed
// otherwise. The error is for a batch that failed whole.
func (w *Web) post(ctx context.Context, s *Shipment, batch []*index.Instance) (stored []*index.Instance, failed int, err error) {
	// The first instance is opened before the request is made: a batch
	// of which none is to be sent is no request.
	skipped := map[string]string{} // SOP Instance UID → why
	var first io.ReadCloser
	for len(batch) > 0 && first == nil {
		first, err = w.open(ctx, batch[0])
		switch {
		case errors.Is(err, ErrNotSendable):
			s.Report(batch[0].SOPInstanceUID, err.Error())
			batch = batch[1:]
		case err != nil:
			return nil, 0, fmt.Errorf("%w: %s: %v", errOpen, batch[0].SOPInstanceUID, err)
		}
	}
	if first == nil {
		return nil, 0, nil
	}
	var rb [12]byte
	rand.Read(rb[:])
	boundary := "pacsd-" + hex.EncodeToString(rb[:])
	pr, pw := io.Pipe()
	writeErr := make(chan error, 1)
	go func() {
		writeErr <- w.writeBody(ctx, pw, boundary, first, batch, skipped)
	}()
	req, err := w.request(ctx, http.MethodPost, "/studies/"+s.Study, pr)
	if err != nil {
		pr.Close()
		<-writeErr
		return nil, 0, err
	}
	req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+boundary)
	req.Header.Set("Accept", "application/dicom+json")
	resp, err := w.client().Do(req)
	pr.CloseWithError(errors.New("request ended")) // stops the writer if the server answered early
	werr := <-writeErr
	if errors.Is(werr, errOpen) {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, 0, werr
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		return nil, 0, fmt.Errorf("%w: %s: STOW-RS: %v", ErrUnreachable, w.Name, redact(err, w.Token))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	switch resp.StatusCode {
	case http.StatusOK, http.StatusAccepted, http.StatusConflict:
	case http.StatusRequestEntityTooLarge:
		return nil, 0, fmt.Errorf("%w: %s: STOW-RS answered %s: %s", errTooLarge, w.Name, resp.Status, snippet(body))
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusRequestTimeout, http.StatusTooManyRequests:
		return nil, 0, fmt.Errorf("%w: %s: STOW-RS answered %s: %s", ErrUnreachable, w.Name, resp.Status, snippet(body))
	default:
		if resp.StatusCode >= 500 {
			return nil, 0, fmt.Errorf("%w: %s: STOW-RS answered %s: %s", ErrUnreachable, w.Name, resp.Status, snippet(body))
		}
		return nil, 0, fmt.Errorf("route: %s: STOW-RS answered %s: %s", w.Name, resp.Status, snippet(body))
	}
	res, perr := parseStowResponse(body)
	if perr != nil && resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("route: %s: STOW-RS answered %s with a body that is not DICOM JSON: %v", w.Name, resp.Status, perr)
	}
	for _, in := range batch {
		reason, isFailed := res.failed[in.SOPInstanceUID]
		if why, ok := skipped[in.SOPInstanceUID]; ok {
			s.Report(in.SOPInstanceUID, why)
			continue
		}
		switch {
		case isFailed && (Refused(dimse.Status(reason)) || resp.StatusCode == http.StatusConflict && !outOfResources(reason)):
			s.Report(in.SOPInstanceUID, fmt.Sprintf("STOW-RS %s, FailureReason 0x%04X", resp.Status, reason))
		case isFailed:
			failed++
			w.log().Warn("instance not stored; will retry", "destination", w.Name, "sop_instance_uid", in.SOPInstanceUID, "failure_reason", fmt.Sprintf("0x%04X", reason))
		case res.stored[in.SOPInstanceUID] || resp.StatusCode == http.StatusOK:
			stored = append(stored, in)
		default:
			failed++
			w.log().Warn("instance neither stored nor failed in the STOW-RS response; will retry", "destination", w.Name, "sop_instance_uid", in.SOPInstanceUID, "status", resp.StatusCode)
		}
	}
	return stored, failed, nil
}

// outOfResources reports whether a FailureReason says the server lacked
// resources (0xA7xx), which passes, even in a 409 Conflict answer; any
// other FailureReason of a 409 refuses the instance for good, as the
// server stored nothing of a request it says conflicts with what it
// holds or accepts (PS3.18 10.5.3).
func outOfResources(reason uint16) bool { return reason&0xFF00 == 0xA700 }

// errTooLarge is a STOW-RS request the destination answered 413 Payload
// Too Large.
var errTooLarge = errors.New("route: request too large for the destination")

// writeBody writes the multipart/related body of a batch.
func (w *Web) writeBody(ctx context.Context, pw *io.PipeWriter, boundary string, first io.ReadCloser, batch []*index.Instance, skipped map[string]string) error {
	mw := multipart.NewWriter(pw)
	if err := mw.SetBoundary(boundary); err != nil {
		first.Close()
		pw.CloseWithError(err)
		return err
	}
	for i, in := range batch {
		obj, err := first, error(nil)
		if i > 0 {
			obj, err = w.open(ctx, in)
		}
		if errors.Is(err, ErrNotSendable) {
			skipped[in.SOPInstanceUID] = err.Error()
			continue
		}
		if err != nil {
			err = fmt.Errorf("%w: %s: %v", errOpen, in.SOPInstanceUID, err)
			pw.CloseWithError(err)
			return err
		}
		part, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		if err == nil {
			_, err = io.Copy(part, w.Limiter.Reader(ctx, obj))
		}
		obj.Close()
		if err != nil {
			pw.CloseWithError(err)
			return err
		}
	}
	err := mw.Close()
	pw.CloseWithError(err)
	return err
}

// open opens the Part-10 object sent for in: as stored, or, for an
// instance with amendments, as the archive serves it, or as Datasets
// gives it.
func (w *Web) open(ctx context.Context, in *index.Instance) (io.ReadCloser, error) {
	var datasets Datasets = w.Objects
	switch {
	case w.Datasets != nil:
		datasets = w.Datasets
	case in.Amended == nil:
		return w.Objects.Open(ctx, in)
	}
	fm, data, err := datasets.OpenDataset(ctx, in, in.TransferSyntaxUID)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(dicom.AppendFileMeta(nil, fm)), data), data}, nil
}

// stowResult is what a STOW-RS response says of each instance.
type stowResult struct {
	stored map[string]bool
	failed map[string]uint16 // FailureReason
}

func parseStowResponse(body []byte) (stowResult, error) {
	res := stowResult{stored: map[string]bool{}, failed: map[string]uint16{}}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return res, errors.New("empty body")
	}
	// Some servers answer an array of one object.
	if body[0] == '[' {
		var arr []json.RawMessage
		if err := json.Unmarshal(body, &arr); err != nil || len(arr) == 0 {
			return res, fmt.Errorf("route: STOW-RS response: %v", err)
		}
		body = arr[0]
	}
	ds, err := dicom.ParseJSON(body)
	if err != nil {
		return res, err
	}
	for _, it := range ds.Items(tag.ReferencedSOPSequence) {
		res.stored[it.First(tag.ReferencedSOPInstanceUID)] = true
	}
	for _, it := range ds.Items(tag.FailedSOPSequence) {
		v, _ := strconv.ParseUint(it.First(tag.FailureReason), 10, 16)
		res.failed[it.First(tag.ReferencedSOPInstanceUID)] = uint16(v)
	}
	return res, nil
}

// count asks the server how many instances of study it holds.
func (w *Web) count(ctx context.Context, study string) (int, error) {
	req, err := w.request(ctx, http.MethodGet, "/studies?StudyInstanceUID="+url.QueryEscape(study)+"&includefield=00201208", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/dicom+json")
	resp, err := w.client().Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: QIDO-RS: %v", ErrUnreachable, w.Name, redact(err, w.Token))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusNoContent:
		return -1, nil
	case resp.StatusCode != http.StatusOK:
		return 0, fmt.Errorf("route: verify at %s: QIDO-RS answered %s: %s", w.Name, resp.Status, snippet(body))
	}
	var arr []json.RawMessage
	if err := json.Unmarshal(body, &arr); err != nil {
		return 0, fmt.Errorf("route: verify at %s: QIDO-RS response: %w", w.Name, err)
	}
	n := -1
	for _, raw := range arr {
		ds, err := dicom.ParseJSON(raw)
		if err != nil {
			return 0, fmt.Errorf("route: verify at %s: %w", w.Name, err)
		}
		if v, err := strconv.Atoi(ds.First(tag.NumberOfStudyRelatedInstances)); err == nil {
			n = max(n, v)
		}
	}
	return n, nil
}

// snippet is the start of an error body, for a message.
func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// redact removes a token from an error's text, should a URL or a server
// have echoed it.
func redact(err error, token string) string {
	s := err.Error()
	if token != "" {
		s = strings.ReplaceAll(s, token, "REDACTED")
	}
	return s
}
