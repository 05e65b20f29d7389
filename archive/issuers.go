package archive

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/storage"
)

// issuerRecord says that, from From on, instances that a calling AE
// title sent without an Issuer of Patient ID of their own were given
// Issuer ("" for none). It is stored under
// issuerPrefix + "ae-" + the AE title in hexadecimal + "/" + a version,
// and written before the first instance it names is committed.
type issuerRecord struct {
	Format int       `json:"format"`
	AE     string    `json:"ae"`
	Issuer string    `json:"issuer"`
	From   time.Time `json:"from"`
}

// issuerDir is the folder of the issuer records of an AE title; STOW-RS
// instances, without one, have the folder "ae-".
func issuerDir(ae string) string {
	return issuerPrefix + "ae-" + hex.EncodeToString([]byte(strings.TrimSpace(ae))) + "/"
}

// issuerLedger writes the issuer records of a Service: once per AE
// title and process, or when the issuer the policy gives it differs from
// the last record's. Instances of an AE whose record is being written
// wait for it.
type issuerLedger struct {
	mu   sync.Mutex
	done map[string]*issuerEntry
}

type issuerEntry struct {
	mu       sync.Mutex
	recorded bool
}

// recordIssuer makes sure storage records the issuer the policy gives
// instances of callingAE, from this Service's start, before an instance
// given it (or given none, where an earlier record gave one) is
// committed. Its cost is one list and at most one durable write per AE
// title and process.
func (s *Service) recordIssuer(ctx context.Context, callingAE string, h *dicom.Dataset) error {
	if strings.TrimSpace(h.String(tag.IssuerOfPatientID)) != "" || strings.TrimSpace(h.String(tag.PatientID)) == "" {
		return nil
	}
	ae := strings.TrimSpace(callingAE)
	l := &s.issuers
	l.mu.Lock()
	if l.done == nil {
		l.done = map[string]*issuerEntry{}
	}
	e := l.done[ae]
	if e == nil {
		e = &issuerEntry{}
		l.done[ae] = e
	}
	l.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.recorded {
		return nil
	}
	issuer := s.cfg.Issuers.For(ae)
	recs, err := readIssuerRecords(ctx, s.cfg.Store, issuerDir(ae))
	switch {
	case errors.Is(err, storage.ErrUnavailable):
		// Storage cannot list now (S3 down behind a spool, which still
		// takes writes): a record written without knowing the last one
		// is at worst a repetition, and the instance is not refused.
	case err != nil:
		return fmt.Errorf("%w: issuer records of %q: %v", ErrUnavailable, ae, err)
	default:
		if n := len(recs); n > 0 && recs[n-1].Issuer == issuer || n == 0 && issuer == "" {
			e.recorded = true
			return nil
		}
	}
	rec := issuerRecord{Format: recordFormat, AE: ae, Issuer: issuer, From: s.started}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	key := issuerDir(ae) + s.versions.next(s.now()) + recordSuffix
	if _, err := s.cfg.Store.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		return fmt.Errorf("%w: issuer record of %q: %v", ErrUnavailable, ae, err)
	}
	e.recorded = true
	return nil
}

// readIssuerRecords reads the issuer records under prefix, by their From.
func readIssuerRecords(ctx context.Context, store storage.Store, prefix string) ([]issuerRecord, error) {
	var out []issuerRecord
	for info, err := range store.List(ctx, prefix) {
		if err != nil {
			return nil, err
		}
		if !strings.HasSuffix(info.Key, recordSuffix) {
			continue
		}
		r, err := readIssuerRecord(ctx, store, info.Key)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	slices.SortStableFunc(out, func(a, b issuerRecord) int { return a.From.Compare(b.From) })
	return out, nil
}

func readIssuerRecord(ctx context.Context, store storage.Store, key string) (issuerRecord, error) {
	var r issuerRecord
	obj, err := store.Open(ctx, key)
	if err != nil {
		return r, err
	}
	defer obj.Close()
	b, err := io.ReadAll(io.LimitReader(obj, 64<<10))
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("issuer record %s: %w", key, err)
	}
	if r.Format != recordFormat {
		return r, fmt.Errorf("issuer record %s: format %d is not %d", key, r.Format, recordFormat)
	}
	return r, nil
}

// issuerBook answers, from the issuer records in storage, which issuer
// an instance was given: what a rebuild of the index and a restore from
// the trash need, since the policy of the time is not in the object.
type issuerBook map[string][]issuerRecord

// loadIssuers reads every issuer record in storage.
func loadIssuers(ctx context.Context, store storage.Store) (issuerBook, error) {
	recs, err := readIssuerRecords(ctx, store, issuerPrefix)
	if err != nil {
		return nil, fmt.Errorf("archive: issuer records: %w", err)
	}
	b := issuerBook{}
	for _, r := range recs {
		b[r.AE] = append(b[r.AE], r)
	}
	return b, nil
}

// amendment returns the attributes served in place of those of h, of an
// instance callingAE sent, received at t: the issuer of the record in
// force then, when h has none. nil for none.
func (b issuerBook) amendment(h *dicom.Dataset, callingAE string, t time.Time) *dicom.Dataset {
	if h == nil || strings.TrimSpace(h.String(tag.IssuerOfPatientID)) != "" || strings.TrimSpace(h.String(tag.PatientID)) == "" {
		return nil
	}
	issuer := ""
	for _, r := range b[strings.TrimSpace(callingAE)] {
		if r.From.After(t) {
			break
		}
		issuer = r.Issuer
	}
	if issuer == "" {
		return nil
	}
	return &dicom.Dataset{Elements: []dicom.Element{{Tag: tag.IssuerOfPatientID, VR: "LO", Values: []string{issuer}}}}
}
