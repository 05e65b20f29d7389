package archive

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/storage"
)

// Records. What the archive decides about instances after they arrive —
// a deletion or expiry, a restore, a correction and its undo, a series
// moved, patients linked or unlinked by hand, and the Issuer of Patient
// ID it gives instances by their sender — is written to storage as a
// small JSON object before the index is changed, so that the bucket alone
// is enough to rebuild the index (Reindex replays them) and a crash at
// any step leaves the index claiming nothing storage cannot reproduce.
// Their keys begin with RecordPrefix, which no instance key can: an
// instance key begins with a Study Instance UID, digits and dots, and
// ends in ".dcm"; a record's begins with "_" and ends in ".json".
//
//	_pacsd/journal/20260314T101502.123456Z_9f3a1c2e7d4b6a58_delete.json
//	_pacsd/issuer/ae-43543031/20260314T101502.123456Z_9f3a1c2e7d4b6a58.json
//
// Journal records (see Record) are named by a version as instances are
// (see Key), so that they sort in the order they were made, and the
// kind of change; the index applies each once, in the transaction of
// the change, and notes it as applied (index.ErrApplied), so that a
// replay after a crash or into an index that has some of them applies
// only the others, in order. The order of a change is:
//
//  1. write the record, durably;
//  2. make the change in the index, noting the record as applied;
//  3. if the index refused the change and has not applied the record,
//     delete the record.
//
// A crash after 1 leaves a record not applied, which the next start of
// pacsd serve (ReplayRecords) or a reindex applies: the record, not the
// index, is what was decided. A purge deletes the record of a deletion
// only once every object it names is gone.
//
// Issuer records (see issuerRecord) say which issuer instances from a
// calling AE title, without one of their own, were given from a moment
// on; one is written the first time a process gives an AE an issuer
// different from the last record's, not one per instance.

// RecordPrefix begins the key of every record of the archive's own.
const RecordPrefix = "_pacsd/"

const (
	journalPrefix = RecordPrefix + "journal/"
	issuerPrefix  = RecordPrefix + "issuer/"
	recordSuffix  = ".json"
)

// IsRecord reports whether key holds a record of the archive's own
// rather than an instance: Reindex and Verify leave such objects to the
// record's readers.
func IsRecord(key string) bool { return strings.HasPrefix(key, RecordPrefix) }

// Kinds of journal records (Record.Kind).
const (
	RecordDelete  = "delete"
	RecordRestore = "restore"
	RecordCorrect = "correct"
	RecordMove    = "move"
	RecordUndo    = "undo"
	RecordLink    = "link"
	RecordUnlink  = "unlink"
)

// recordFormat is the version of the records' format.
const recordFormat = 1

// maxRecordSize bounds a record read back: a deletion of a very large
// study names each of its objects.
const maxRecordSize = 256 << 20

// Record is one journal record, as stored (JSON). Which fields a kind
// uses:
//
//	delete   study, series, instance, cause, keys (the objects removed)
//	restore  study, keys (the objects to bring back)
//	correct  study, attributes (DICOM JSON, the values after)
//	move     series, target
//	undo     undoes (the key of the record undone), undoes_id
//	link     patients ("ID^ISSUER")
//	unlink   patients
//
// and all of them format, kind, time, principal and reason.
type Record struct {
	Format     int             `json:"format"`
	Kind       string          `json:"kind"`
	Time       time.Time       `json:"time"`
	Principal  string          `json:"principal,omitempty"`
	Reason     string          `json:"reason,omitempty"`
	Study      string          `json:"study,omitempty"`
	Series     string          `json:"series,omitempty"`
	Instance   string          `json:"instance,omitempty"`
	Cause      string          `json:"cause,omitempty"`
	Keys       []string        `json:"keys,omitempty"`
	Attributes json.RawMessage `json:"attributes,omitempty"`
	Target     string          `json:"target,omitempty"`
	Undoes     string          `json:"undoes,omitempty"`
	UndoesID   int64           `json:"undoes_id,omitempty"`
	Patients   []string        `json:"patients,omitempty"`
}

// recordWriter writes journal records.
type recordWriter struct {
	store    storage.Store
	versions *versions
}

// write stores r durably under a new key, which it returns.
func (w recordWriter) write(ctx context.Context, r *Record) (string, error) {
	r.Format = recordFormat
	b, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("archive: record %s: %w", r.Kind, err)
	}
	key := journalPrefix + w.versions.next(r.Time) + "_" + r.Kind + recordSuffix
	if _, err := w.store.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		return "", fmt.Errorf("%w: record %s: %v", ErrUnavailable, r.Kind, err)
	}
	return key, nil
}

// readRecord reads the journal record under key.
func readRecord(ctx context.Context, store storage.Store, key string) (*Record, error) {
	obj, err := store.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	b, err := io.ReadAll(io.LimitReader(obj, maxRecordSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxRecordSize {
		return nil, fmt.Errorf("record %s is larger than %d bytes", key, maxRecordSize)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("record %s: %w", key, err)
	}
	if r.Format != recordFormat {
		return nil, fmt.Errorf("record %s: format %d is not %d", key, r.Format, recordFormat)
	}
	return &r, nil
}

// recordKeys lists the keys of the journal records, oldest first.
func recordKeys(ctx context.Context, store storage.Store) ([]string, error) {
	var keys []string
	for info, err := range store.List(ctx, journalPrefix) {
		if err != nil {
			return nil, err
		}
		if strings.HasSuffix(info.Key, recordSuffix) {
			keys = append(keys, info.Key)
		}
	}
	slices.Sort(keys)
	return keys, nil
}

// Recorder is what a change that is recorded needs of the index: to
// tell whether it applied a record, and to note one it applied over
// several transactions, or could not apply.
type Recorder interface {
	Applied(ctx context.Context, key string) (applied bool, outcome string, err error)
	MarkApplied(ctx context.Context, key, outcome string) error
}

// settle ends a change whose record is under key and whose index
// change returned err: nil and index.ErrApplied (a replay applied it
// meanwhile) are success; otherwise the record is deleted if the index
// did not apply it, so that no replay makes a change that was reported
// refused. If the index cannot say, the record stays, and the next
// replay makes the change or notes why it cannot.
func settle(ctx context.Context, store storage.Store, idx Recorder, log *slog.Logger, key string, err error) error {
	if err == nil || errors.Is(err, index.ErrApplied) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
	defer cancel()
	applied, _, aerr := idx.Applied(ctx, key)
	switch {
	case aerr != nil:
		log.Warn("change failed, its record kept for the next replay", "record", key, "err", err, "index_err", aerr)
	case !applied:
		if derr := store.Delete(ctx, key); derr != nil {
			log.Error("record of a change that failed not deleted; the next replay tries the change again", "record", key, "err", derr)
		}
	}
	return err
}

// CorrectionIndex is what Journal needs of the index.
type CorrectionIndex interface {
	Recorder
	Correct(ctx context.Context, c *index.Correction) (*index.Correction, error)
	MoveSeries(ctx context.Context, c *index.Correction) (*index.Correction, error)
	UndoCorrection(ctx context.Context, u *index.Correction) (*index.Correction, error)
	Correction(ctx context.Context, id int64) (*index.Correction, error)
	CorrectionByRecord(ctx context.Context, key string) (*index.Correction, error)
	LinkPatients(ctx context.Context, l index.Link) error
}

// Journal makes corrections and links by hand, each recorded in storage
// before the index makes it (see the order above). It is safe for
// concurrent use.
type Journal struct {
	Store  storage.Store
	Index  CorrectionIndex
	Logger *slog.Logger
	// Now is the clock of the records; time.Now when nil.
	Now func() time.Time

	versions versions
}

func (j *Journal) log() *slog.Logger {
	if j.Logger != nil {
		return j.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (j *Journal) now() time.Time {
	if j.Now != nil {
		return j.Now().UTC()
	}
	return time.Now().UTC()
}

func (j *Journal) writer() recordWriter { return recordWriter{j.Store, &j.versions} }

// Correct records and makes a correction of a study's attributes; see
// index.Correction.
func (j *Journal) Correct(ctx context.Context, c *index.Correction) (*index.Correction, error) {
	if c == nil || strings.TrimSpace(c.Reason) == "" {
		return nil, fmt.Errorf("%w: a correction needs a reason", index.ErrInvalidCorrection)
	}
	if c.After == nil || len(c.After.Elements) == 0 {
		return nil, fmt.Errorf("%w: nothing to correct", index.ErrInvalidCorrection)
	}
	attrs, err := c.After.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", index.ErrInvalidCorrection, err)
	}
	return j.correct(ctx, &Record{Kind: RecordCorrect, Study: c.Study, Attributes: attrs, Reason: c.Reason, Principal: c.Principal},
		func(rec *index.Correction) (*index.Correction, error) { return j.Index.Correct(ctx, rec) },
		&index.Correction{Study: c.Study, After: c.After, Reason: c.Reason, Principal: c.Principal})
}

// MoveSeries records and makes the move of series c.Series to study
// c.Target.
func (j *Journal) MoveSeries(ctx context.Context, c *index.Correction) (*index.Correction, error) {
	if c == nil || strings.TrimSpace(c.Reason) == "" {
		return nil, fmt.Errorf("%w: a correction needs a reason", index.ErrInvalidCorrection)
	}
	return j.correct(ctx, &Record{Kind: RecordMove, Series: c.Series, Target: c.Target, Reason: c.Reason, Principal: c.Principal},
		func(rec *index.Correction) (*index.Correction, error) { return j.Index.MoveSeries(ctx, rec) },
		&index.Correction{Series: c.Series, Target: c.Target, Reason: c.Reason, Principal: c.Principal})
}

// Undo records and makes the undo of correction id.
func (j *Journal) Undo(ctx context.Context, id int64, reason, principal string) (*index.Correction, error) {
	if strings.TrimSpace(reason) == "" {
		return nil, fmt.Errorf("%w: a correction needs a reason", index.ErrInvalidCorrection)
	}
	c, err := j.Index.Correction(ctx, id)
	if err != nil {
		return nil, err
	}
	return j.correct(ctx, &Record{Kind: RecordUndo, Undoes: c.Record, UndoesID: id, Reason: reason, Principal: principal},
		func(rec *index.Correction) (*index.Correction, error) { return j.Index.UndoCorrection(ctx, rec) },
		&index.Correction{Undoes: id, Reason: reason, Principal: principal})
}

func (j *Journal) correct(ctx context.Context, r *Record, apply func(*index.Correction) (*index.Correction, error), c *index.Correction) (*index.Correction, error) {
	r.Time = j.now()
	key, err := j.writer().write(ctx, r)
	if err != nil {
		return nil, err
	}
	c.Record, c.Time = key, r.Time
	out, err := apply(c)
	if errors.Is(err, index.ErrApplied) {
		return j.Index.CorrectionByRecord(ctx, key)
	}
	return out, settle(ctx, j.Store, j.Index, j.log(), key, err)
}

// Link records and makes a link by hand of local patients.
func (j *Journal) Link(ctx context.Context, keys ...index.PatientKey) error {
	return j.LinkPatients(ctx, index.Link{Patients: keys})
}

// Unlink records and makes an unlink by hand of local patients.
func (j *Journal) Unlink(ctx context.Context, keys ...index.PatientKey) error {
	return j.LinkPatients(ctx, index.Link{Patients: keys, Unlink: true})
}

// LinkPatients records and makes l.
func (j *Journal) LinkPatients(ctx context.Context, l index.Link) error {
	if !l.Unlink && len(l.Patients) < 2 {
		return fmt.Errorf("%w: link needs two patients or more", index.ErrLink)
	}
	r := &Record{Kind: RecordLink, Principal: l.Principal, Time: j.now()}
	if l.Unlink {
		r.Kind = RecordUnlink
	}
	for _, k := range l.Patients {
		r.Patients = append(r.Patients, k.String())
	}
	key, err := j.writer().write(ctx, r)
	if err != nil {
		return err
	}
	l.Record, l.Time = key, r.Time
	return settle(ctx, j.Store, j.Index, j.log(), key, j.Index.LinkPatients(ctx, l))
}

// ReplayIndex is what ReplayRecords needs of the index.
type ReplayIndex interface {
	CorrectionIndex
	TrashIndex
	// TrashObject records an object in the trash as it is.
	TrashObject(ctx context.Context, t index.Trashed) error
	Instance(ctx context.Context, sopInstanceUID string) (*index.Instance, error)
}

// ReplayResult sums up a replay of the journal.
type ReplayResult struct {
	// Records counts the records read, Applied those applied now,
	// Refused those the index could not apply (noted as applied, with
	// why, and logged).
	Records, Applied, Refused int
}

// ReplayRecords applies, oldest first, the journal records in storage
// that the index has not applied: after a crash between a record and
// its change (pacsd serve runs it as it starts), and into an index
// rebuilt from the objects (Reindex runs it once they are indexed). A
// record whose change the index refuses (a study that is gone, patients
// that cannot be linked) is noted as applied with why, and skipped. It
// stops at the first record it cannot read or apply for any other
// reason, which the next replay tries again.
func ReplayRecords(ctx context.Context, store storage.Store, idx ReplayIndex, log *slog.Logger) (ReplayResult, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var res ReplayResult
	keys, err := recordKeys(ctx, store)
	if err != nil {
		return res, fmt.Errorf("archive: replay: list records: %w", err)
	}
	trash := &Trash{Store: store, Index: idx, Logger: log}
	for _, key := range keys {
		res.Records++
		applied, _, err := idx.Applied(ctx, key)
		if err != nil {
			return res, fmt.Errorf("archive: replay: %w", err)
		}
		if applied {
			continue
		}
		r, err := readRecord(ctx, store, key)
		if errors.Is(err, storage.ErrNotFound) {
			continue // abandoned or purged since it was listed
		}
		if err != nil {
			return res, fmt.Errorf("archive: replay: %w", err)
		}
		err = replay(ctx, idx, trash, key, r)
		switch {
		case err == nil, errors.Is(err, index.ErrApplied):
			res.Applied++
		case refused(err):
			res.Refused++
			log.Warn("record not applied: the index refuses its change", "record", key, "kind", r.Kind, "err", err)
			if err := idx.MarkApplied(ctx, key, err.Error()); err != nil {
				return res, fmt.Errorf("archive: replay: %w", err)
			}
		default:
			return res, fmt.Errorf("archive: replay %s: %w", key, err)
		}
	}
	return res, nil
}

// trashLeftovers puts in the trash the objects a delete record names
// that the removal did not take, because the index holds a newer version
// of their instance (sent again after the deletion): they were in the
// trash of the index that deleted them, and must not become orphans.
func trashLeftovers(ctx context.Context, idx ReplayIndex, trash *Trash, r *Record, removed []index.Instance) (n int, err error) {
	for _, k := range r.Keys {
		if slices.ContainsFunc(removed, func(in index.Instance) bool { return in.Key == k }) {
			continue
		}
		if ok, err := idx.Trashed(ctx, k); err != nil {
			return n, err
		} else if ok {
			continue
		}
		info, err := trash.Store.Stat(ctx, k)
		if errors.Is(err, storage.ErrNotFound) {
			continue // purged
		}
		if err != nil {
			return n, err
		}
		in, _, err := readInstance(ctx, trash.Store, info, trash.Limits)
		if err != nil {
			return n, fmt.Errorf("%s: %w", k, err)
		}
		if cur, err := idx.Instance(ctx, in.SOPInstanceUID); err == nil && cur.Key == k {
			continue // indexed: the removal left it for a reason of its own
		}
		err = idx.TrashObject(ctx, index.Trashed{Instance: *in, RemovedAt: r.Time, Cause: cmp.Or(r.Cause, index.CauseDeleted), Purge: true})
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// refused reports an error of a change the index will never make.
func refused(err error) bool {
	return errors.Is(err, index.ErrNotFound) || errors.Is(err, index.ErrInvalidCorrection) ||
		errors.Is(err, index.ErrLink) || errors.Is(err, index.ErrInvalidQuery) || errors.Is(err, errUnknownRecord)
}

var errUnknownRecord = errors.New("archive: record of an unknown kind")

// replay applies one record.
func replay(ctx context.Context, idx ReplayIndex, trash *Trash, key string, r *Record) error {
	switch r.Kind {
	case RecordDelete:
		removed, err := idx.Remove(ctx, index.Removal{
			Selection: index.Selection{StudyInstanceUID: r.Study, SeriesInstanceUID: r.Series, SOPInstanceUID: r.Instance},
			Cause:     r.Cause, Reason: r.Reason, Principal: r.Principal, Keys: r.Keys, Record: key, Time: r.Time})
		if err != nil && !errors.Is(err, index.ErrNotFound) {
			return err
		}
		n, lerr := trashLeftovers(ctx, idx, trash, r, removed)
		if lerr != nil || err == nil || n == 0 {
			return errors.Join(err, lerr)
		}
		// Every object it names was sent again since: the trash has
		// them now, and the log the deletion.
		action := index.ActionDelete
		if r.Cause == index.CauseExpired {
			action = index.ActionExpire
		}
		if _, err := idx.RecordEvent(ctx, index.Event{Action: action, StudyInstanceUID: r.Study, SeriesInstanceUID: r.Series,
			SOPInstanceUID: r.Instance, Instances: n, Reason: r.Reason, Principal: r.Principal}); err != nil {
			return err
		}
		return idx.MarkApplied(ctx, key, "")
	case RecordRestore:
		return trash.restoreKeys(ctx, r, key)
	case RecordCorrect:
		after, err := dicom.ParseJSON(r.Attributes)
		if err != nil {
			return fmt.Errorf("%w: %v", index.ErrInvalidCorrection, err)
		}
		_, err = idx.Correct(ctx, &index.Correction{Study: r.Study, After: after, Reason: r.Reason, Principal: r.Principal, Record: key, Time: r.Time})
		return err
	case RecordMove:
		_, err := idx.MoveSeries(ctx, &index.Correction{Series: r.Series, Target: r.Target, Reason: r.Reason, Principal: r.Principal, Record: key, Time: r.Time})
		return err
	case RecordUndo:
		id := r.UndoesID
		if r.Undoes != "" {
			c, err := idx.CorrectionByRecord(ctx, r.Undoes)
			if err != nil {
				return err
			}
			id = c.ID
		} else if c, err := idx.Correction(ctx, id); err != nil {
			return err
		} else if c.Record != "" {
			// The correction undone had no record, and the one that has
			// its ID in this index is another.
			return fmt.Errorf("%w: correction %d of the record is not in this index", index.ErrNotFound, id)
		}
		_, err := idx.UndoCorrection(ctx, &index.Correction{Undoes: id, Reason: r.Reason, Principal: r.Principal, Record: key, Time: r.Time})
		return err
	case RecordLink, RecordUnlink:
		l := index.Link{Unlink: r.Kind == RecordUnlink, Record: key, Principal: r.Principal, Time: r.Time}
		for _, p := range r.Patients {
			k, err := index.ParsePatientKey(p)
			if err != nil {
				return err
			}
			l.Patients = append(l.Patients, k)
		}
		return idx.LinkPatients(ctx, l)
	}
	return fmt.Errorf("%w: %q", errUnknownRecord, r.Kind)
}
