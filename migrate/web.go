package migrate

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
)

// WebSource is a legacy archive reached over DICOMweb: QIDO-RS to
// discover and list, paged with limit and offset; WADO-RS with
// transfer-syntax=* to retrieve each instance as the source stores it.
type WebSource struct {
	// Root is the DICOMweb root URL, without a trailing slash:
	// https://old.example/dicom-web.
	Root string
	// Token, when set, is sent as a bearer token. It never appears in
	// errors or logs.
	Token string
	// Client makes the requests; http.DefaultClient when nil.
	Client *http.Client
	// PageSize is the limit of each QIDO-RS request (default 1000).
	PageSize int
}

var _ Source = (*WebSource)(nil)

// Kind implements Source.
func (w *WebSource) Kind() string { return KindDICOMweb }

// Close implements Source.
func (w *WebSource) Close() error { return nil }

func (w *WebSource) client() *http.Client {
	if w.Client != nil {
		return w.Client
	}
	return http.DefaultClient
}

// get sends a GET of path (below Root) with the query and Accept given.
func (w *WebSource) get(ctx context.Context, path string, q url.Values, accept string) (*http.Response, error) {
	u := w.Root + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	req.Header.Set("Accept", accept)
	if w.Token != "" {
		req.Header.Set("Authorization", "Bearer "+w.Token)
	}
	resp, err := w.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode == http.StatusNoContent {
		resp.Body.Close()
		resp.Body = http.NoBody
		return resp, nil
	}
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(msg)))
	}
	return resp, nil
}

// search pages through a QIDO-RS search, calling fn with each match. It
// reports whether the source said it capped the answer (a Warning 299
// header) or ignored the offset.
func (w *WebSource) search(ctx context.Context, path string, q url.Values, fn func(*dicom.Dataset)) (capped bool, reason string, err error) {
	size := w.PageSize
	if size <= 0 {
		size = 1000
	}
	firstOfPage := ""
	for offset := 0; ; {
		q.Set("limit", strconv.Itoa(size))
		q.Set("offset", strconv.Itoa(offset))
		resp, err := w.get(ctx, path, q, "application/dicom+json")
		if err != nil {
			return false, "", err
		}
		var page []json.RawMessage
		err = json.NewDecoder(resp.Body).Decode(&page)
		warning := resp.Header.Get("Warning")
		resp.Body.Close()
		if err != nil && !errors.Is(err, io.EOF) {
			return false, "", fmt.Errorf("GET %s: %w", path, err)
		}
		if strings.HasPrefix(warning, "299") {
			capped, reason = true, "the source warned: "+warning
		}
		if len(page) == 0 {
			return capped, reason, nil
		}
		for i, raw := range page {
			ds, err := dicom.ParseJSON(raw)
			if err != nil {
				return false, "", fmt.Errorf("GET %s: %w", path, err)
			}
			if i == 0 {
				first := ds.First(tag.SOPInstanceUID) + ds.First(tag.StudyInstanceUID)
				if offset > 0 && first == firstOfPage {
					return true, "the source ignores offset", nil
				}
				firstOfPage = first
			}
			fn(ds)
		}
		offset += len(page)
	}
}

// FindStudies implements Source.
func (w *WebSource) FindStudies(ctx context.Context, q Query) (Answer, error) {
	v := url.Values{}
	switch {
	case q.EmptyDate:
		v.Set("StudyDate", `""`)
	case q.DateFrom != "" || q.DateTo != "":
		v.Set("StudyDate", q.dateRange())
	}
	switch {
	case q.EmptyTime:
		v.Set("StudyTime", `""`)
	case q.TimeFrom != "":
		v.Set("StudyTime", q.TimeFrom+"-"+q.TimeTo)
	}
	if q.Modality != "" {
		v.Set("ModalitiesInStudy", q.Modality)
	}
	if q.NameInitial != "" {
		v.Set("PatientName", q.NameInitial+"*")
	}
	for _, k := range q.Keys {
		info, _ := tag.Lookup(k.Tag)
		v.Set(info.Keyword, k.Value)
	}
	for _, t := range []tag.Tag{tag.StudyDate, tag.StudyTime, tag.AccessionNumber, tag.ModalitiesInStudy, tag.PatientName,
		tag.PatientID, tag.IssuerOfPatientID, tag.PatientBirthDate, tag.NumberOfStudyRelatedInstances} {
		v.Add("includefield", t.Hex())
	}
	var ans Answer
	capped, reason, err := w.search(ctx, "/studies", v, func(ds *dicom.Dataset) {
		if st := studyOf(ds); st.StudyInstanceUID != "" && uid.Valid(st.StudyInstanceUID) == nil {
			ans.Studies = append(ans.Studies, st)
		}
	})
	if err != nil {
		return Answer{}, fmt.Errorf("QIDO-RS: %w", err)
	}
	ans.Capped, ans.Reason = capped, reason
	return ans, nil
}

// Instances implements Source.
func (w *WebSource) Instances(ctx context.Context, study string) ([]InstanceRef, error) {
	v := url.Values{}
	for _, t := range []tag.Tag{tag.SOPClassUID, tag.SOPInstanceUID, tag.SeriesInstanceUID} {
		v.Add("includefield", t.Hex())
	}
	var refs []InstanceRef
	capped, reason, err := w.search(ctx, "/studies/"+url.PathEscape(study)+"/instances", v, func(ds *dicom.Dataset) {
		if r := (InstanceRef{SOPInstanceUID: ds.First(tag.SOPInstanceUID), SOPClassUID: ds.First(tag.SOPClassUID), SeriesInstanceUID: ds.First(tag.SeriesInstanceUID)}); r.SOPInstanceUID != "" {
			refs = append(refs, r)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("list instances: QIDO-RS: %w", err)
	}
	if capped {
		return nil, fmt.Errorf("list instances: QIDO-RS: %s", reason)
	}
	return refs, nil
}

// Retrieve implements Source: one WADO-RS request for the study, whose
// parts are the source's files as it stores them.
func (w *WebSource) Retrieve(ctx context.Context, study string, refs, only []InstanceRef, dst Receiver) error {
	if only == nil {
		return w.retrieve(ctx, "/studies/"+url.PathEscape(study), dst)
	}
	var errs []error
	for _, r := range only {
		path := "/studies/" + url.PathEscape(study) + "/series/" + url.PathEscape(r.SeriesInstanceUID) + "/instances/" + url.PathEscape(r.SOPInstanceUID)
		if err := w.retrieve(ctx, path, dst); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 3 {
		errs = append(errs[:3], fmt.Errorf("and %d more", len(errs)-3))
	}
	return errors.Join(errs...)
}

// retrieve gets the instances below path with one WADO-RS request.
func (w *WebSource) retrieve(ctx context.Context, path string, dst Receiver) error {
	resp, err := w.get(ctx, path, nil, `multipart/related; type="application/dicom"; transfer-syntax=*`)
	if err != nil {
		return fmt.Errorf("WADO-RS: %w", err)
	}
	defer resp.Body.Close()
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || !strings.HasPrefix(mt, "multipart/") || params["boundary"] == "" {
		return fmt.Errorf("WADO-RS: answer of type %q is not multipart", resp.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	failed := 0
	var firstErr error
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("WADO-RS: %w", err)
		}
		br := bufio.NewReaderSize(part, 64<<10)
		fm, _, err := dicom.ReadFileMeta(br)
		if err == nil {
			err = dst.Receive(ctx, &Incoming{SOPClassUID: fm.MediaStorageSOPClassUID, SOPInstanceUID: fm.MediaStorageSOPInstanceUID,
				TransferSyntaxUID: fm.TransferSyntaxUID, Dataset: br, Exact: true})
		}
		if err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
		}
		part.Close()
	}
	if failed > 0 {
		return fmt.Errorf("WADO-RS: %d instances not kept, the first: %w", failed, firstErr)
	}
	return nil
}
