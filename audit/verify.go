package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ErrBroken reports a journal whose chain is broken: a record edited,
// removed or added other than by the journal. A *BreakError says where.
var ErrBroken = errors.New("audit: journal chain broken")

// BreakError locates a break in the chain.
type BreakError struct {
	File string // journal file name
	Line int    // 1-based; 0 when the break is past the end
	Seq  uint64 // the record's sequence number, or the one expected
	Why  string
}

func (e *BreakError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("audit: journal chain broken after %s: %s", e.File, e.Why)
	}
	return fmt.Sprintf("audit: journal chain broken at %s line %d (record %d): %s", e.File, e.Line, e.Seq, e.Why)
}

func (e *BreakError) Is(target error) bool { return target == ErrBroken }

// maxLine bounds one record's line.
const maxLine = 16 << 20

// rawRecord is a record read back with where it was.
type rawRecord struct {
	file string
	line int
	raw  []byte // without the newline
}

// lines yields the complete lines of the journal files in dir, in order.
// An incomplete last line (being written) is not yielded.
func lines(ctx context.Context, dir string) iter.Seq2[rawRecord, error] {
	return func(yield func(rawRecord, error) bool) {
		names, err := journalFiles(dir)
		if err != nil {
			yield(rawRecord{}, fmt.Errorf("audit: %w", err))
			return
		}
		for _, name := range names {
			f, err := os.Open(filepath.Join(dir, name))
			if err != nil {
				yield(rawRecord{}, fmt.Errorf("audit: %w", err))
				return
			}
			br := bufio.NewReaderSize(f, 64<<10)
			for n := 1; ; n++ {
				if err := ctx.Err(); err != nil {
					f.Close()
					yield(rawRecord{}, err)
					return
				}
				b, err := readLine(br)
				if err == io.EOF {
					break
				}
				if err != nil {
					f.Close()
					yield(rawRecord{}, fmt.Errorf("audit: %s line %d: %w", name, n, err))
					return
				}
				if !yield(rawRecord{file: name, line: n, raw: b}, nil) {
					f.Close()
					return
				}
			}
			f.Close()
		}
	}
}

// readLine returns the next complete line, or io.EOF at the end or before
// an incomplete line.
func readLine(br *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		chunk, err := br.ReadSlice('\n')
		out = append(out, chunk...)
		if len(out) > maxLine {
			return nil, fmt.Errorf("record longer than %d bytes", maxLine)
		}
		switch {
		case err == nil:
			return out[:len(out)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return nil, io.EOF
		default:
			return nil, err
		}
	}
}

// Report sums up a verified journal.
type Report struct {
	Records uint64
	Head    Head
	Files   int
}

// Verify checks the chain of the journal in dir: every record parses,
// numbers follow one another from 1, and each carries the hash of the
// one before. If head is not nil (the head kept in the index), the
// journal must also reach it with the same hash, so that records removed
// from the end are detected. Breaks are *BreakError, matching ErrBroken.
func Verify(ctx context.Context, dir string, head *Head) (Report, error) {
	var rep Report
	var prev [sha256.Size]byte
	lastFile := ""
	sawHead := head == nil || head.Seq == 0
	for rr, err := range lines(ctx, dir) {
		if err != nil {
			return rep, err
		}
		if rr.file != lastFile {
			rep.Files++
			lastFile = rr.file
		}
		var r record
		if err := json.Unmarshal(rr.raw, &r); err != nil {
			return rep, &BreakError{File: rr.file, Line: rr.line, Seq: rep.Records + 1, Why: "not a record: " + err.Error()}
		}
		if r.Seq != rep.Records+1 {
			return rep, &BreakError{File: rr.file, Line: rr.line, Seq: r.Seq, Why: fmt.Sprintf("record %d follows record %d", r.Seq, rep.Records)}
		}
		if r.Prev != hex.EncodeToString(prev[:]) {
			return rep, &BreakError{File: rr.file, Line: rr.line, Seq: r.Seq, Why: "the hash of the previous record does not match: a record before it was edited or removed"}
		}
		prev = sha256.Sum256(rr.raw)
		rep.Records = r.Seq
		rep.Head = Head{Seq: r.Seq, Hash: prev}
		if head != nil && r.Seq == head.Seq {
			if prev != head.Hash {
				return rep, &BreakError{File: rr.file, Line: rr.line, Seq: r.Seq, Why: "the record differs from the one the index knows as the head: it was edited"}
			}
			sawHead = true
		}
	}
	if !sawHead {
		return rep, &BreakError{File: lastFile, Seq: head.Seq, Why: fmt.Sprintf("the journal ends at record %d, but the index knows record %d: records were removed from the end", rep.Records, head.Seq)}
	}
	return rep, nil
}

// Filter selects records; empty fields select all.
type Filter struct {
	Patient string // Patient ID, without issuer
	Study   string // Study Instance UID
	User    string // a participant's user ID
	Since   time.Time
	Event   string // event ID code, e.g. "110104"
}

// Record is a journal record as Query returns it.
type Record struct {
	Seq      uint64
	Time     time.Time
	Event    string
	Action   string
	Outcome  string
	Patients []string
	Studies  []string
	Users    []string
	// XML is the audit message.
	XML string
}

func (f *Filter) match(r *record) bool {
	return (f.Patient == "" || slices.Contains(r.Patients, f.Patient)) &&
		(f.Study == "" || slices.Contains(r.Studies, f.Study)) &&
		(f.User == "" || slices.Contains(r.Users, f.User)) &&
		(f.Event == "" || r.Event == f.Event) &&
		(f.Since.IsZero() || !r.Time.Before(f.Since))
}

// Search yields the records of the journal in dir that f selects, oldest
// first. It reads what is written while a Journal appends, and skips no
// broken record silently: a line that does not parse is an error.
func Search(ctx context.Context, dir string, f Filter) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		for rr, err := range lines(ctx, dir) {
			if err != nil {
				yield(Record{}, err)
				return
			}
			if !f.mayMatch(rr.raw) {
				continue
			}
			var r record
			if err := json.Unmarshal(rr.raw, &r); err != nil {
				yield(Record{}, &BreakError{File: rr.file, Line: rr.line, Why: "not a record: " + err.Error()})
				return
			}
			if f.match(&r) && !yield(Record{Seq: r.Seq, Time: r.Time, Event: r.Event, Action: r.Action, Outcome: r.Outcome,
				Patients: r.Patients, Studies: r.Studies, Users: r.Users, XML: r.Message}, nil) {
				return
			}
		}
	}
}

// mayMatch is a cheap test before decoding: a value sought must occur in
// the line as it is, unless JSON would have escaped it.
func (f *Filter) mayMatch(line []byte) bool {
	for _, v := range []string{f.Patient, f.Study, f.User} {
		if v == "" || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r > 0x7E || strings.ContainsRune(`<>&"\`, r) }) {
			continue
		}
		if !bytes.Contains(line, []byte(v)) {
			return false
		}
	}
	return true
}
