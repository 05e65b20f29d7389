package index

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
)

// ErrInvalidQuery reports a query the index refuses: an unknown level, a
// unique key missing or out of place, a malformed range, a wild card in a
// UID, and so on. The error that wraps it says which.
var ErrInvalidQuery = errors.New("index: invalid query")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidQuery, fmt.Sprintf(format, args...))
}

// Level is a level of the Query/Retrieve information model (PS3.4
// C.6): the entities a query asks for.
type Level int

const (
	PatientLevel Level = iota + 1
	StudyLevel
	SeriesLevel
	// ImageLevel is the level of instances, which DICOM calls IMAGE
	// whatever the instances are.
	ImageLevel
)

var levelNames = [...]string{PatientLevel: "PATIENT", StudyLevel: "STUDY", SeriesLevel: "SERIES", ImageLevel: "IMAGE"}

// String returns the level's name as Query/Retrieve Level (0008,0052)
// holds it.
func (l Level) String() string {
	if l.valid() {
		return levelNames[l]
	}
	return "Level(" + strconv.Itoa(int(l)) + ")"
}

func (l Level) valid() bool { return l >= PatientLevel && l <= ImageLevel }

// ParseLevel reads a value of Query/Retrieve Level (0008,0052): PATIENT,
// STUDY, SERIES or IMAGE.
func ParseLevel(s string) (Level, error) {
	s = strings.TrimSpace(s)
	for l := PatientLevel; l <= ImageLevel; l++ {
		if levelNames[l] == s {
			return l, nil
		}
	}
	return 0, invalid("unknown Query/Retrieve Level %q", s)
}

// uniqueKey returns the unique key of level l (PS3.4 C.6.1.1 and
// C.6.2.1); the patient level has none in the Study Root model, which
// has no patient level.
func uniqueKey(l Level) tag.Tag {
	switch l {
	case PatientLevel:
		return tag.PatientID
	case StudyLevel:
		return tag.StudyInstanceUID
	case SeriesLevel:
		return tag.SeriesInstanceUID
	case ImageLevel:
		return tag.SOPInstanceUID
	}
	return 0
}

// Query is a query of the Query/Retrieve information model, as C-FIND,
// C-MOVE and C-GET carry it in an identifier and QIDO-RS in a URL.
//
// # Matching
//
// Every key is matched as PS3.4 C.2.2.2 defines:
//
//   - A key without a value, or with the value "*", is universal: it
//     matches every entity and asks for the attribute to be returned.
//   - A value without wild cards is matched whole (Single Value
//     Matching); leading and trailing spaces are not significant. The
//     value "" (two quotation marks) matches the entities whose attribute
//     is empty or absent.
//   - "*" and "?" are wild cards in keys of VR AE, CS, LO, LT, PN, SH,
//     ST, UC, UR and UT; in keys of any other VR they make the query
//     invalid.
//   - A UID key may be a list of UIDs, separated by backslashes or, as
//     QIDO-RS writes them, by commas: it matches any of them.
//   - Any other key with several values matches when any of them does
//     ("CT\MR"), and a key matches an attribute with several values when
//     any of them matches.
//   - DA, TM and DT keys may be ranges: "a-b", "-b" and "a-", bounds
//     included. A bound, or a single value, stands for the whole period
//     it names: "1030" is 10:30:00 to 10:30:59.999999. A stored value
//     stands for the start of its period: "10" is 10:00:00. Dates and
//     times are compared by the moment they stand for, whatever their
//     precision; DT values are compared in UTC when they carry an offset
//     (or their instance has a Timezone Offset From UTC, or, for a key,
//     the identifier has one); without one they are taken as they are.
//     DA and TM values are compared as they are: Timezone Offset From
//     UTC is not applied to them, and a time range may not cross
//     midnight.
//   - PN keys are matched case-insensitively unless CaseSensitiveNames
//     is set, against each value of the attribute as a whole and against
//     each of its component groups, with the spaces around components and
//     trailing empty components ignored: "YAMADA*" and "山田*" both
//     match "Yamada^Tarou=山田^太郎=やまだ^たろう". A key of several
//     component groups ("Yamada^Tarou=山田^太郎") matches when each of
//     its groups matches the group of the same place.
//   - With FuzzyNames, a PN key also matches when each word of it (its
//     components split at spaces) begins a word of a component of the
//     name, case-insensitively: "tar yam" and "YAMA" match the name
//     above. The words may be found in different values of a
//     multi-valued attribute.
//   - A sequence key holds one item of keys (Sequence Matching): it
//     matches when one item of the stored sequence matches all of them,
//     and returns the matching items with the keys asked for. The index
//     matches on Request Attributes Sequence > Scheduled Procedure Step
//     ID and Requested Procedure ID, Issuer of Accession Number Sequence
//     > Local Namespace Entity ID, Procedure Code Sequence and Concept
//     Name Code Sequence > Code Value, and Issuer of Patient ID
//     Qualifiers Sequence > Universal Entity ID; once one of those keys
//     has a value, the other keys of its item are matched too. Keys in
//     any other sequence are return keys only (see UnsupportedKeys).
//   - Modalities in Study and SOP Classes in Study match when any
//     series or instance of the study does. The numbers of related
//     studies, series and instances are return keys only.
//
// A key may name an attribute of the query's level or of any level
// above it: a STUDY query may match on and return Patient's Name, an
// IMAGE query Study Date. A key of a level below the query's is returned
// empty, and the unique key of a level below makes the query invalid.
// Attributes the index does not keep are returned empty, never invented.
type Query struct {
	Level Level
	// Identifier holds the matching and return keys, as a C-FIND
	// identifier does (PS3.4 C.2.2): an element with a value is a
	// matching key, an empty one a universal match (return key).
	// Sequences carry one item of keys. Values are in UTF-8. Query/
	// Retrieve Level is returned as Level; Specific Character Set is
	// neither matched nor returned: results are in UTF-8, and the front
	// doors encode them.
	Identifier *dicom.Dataset
	// Hierarchical requires the unique keys of the levels above Level
	// (PS3.4 C.4.1.2.1), as C-FIND, C-MOVE and C-GET do without
	// relational negotiation; C-MOVE and C-GET also require the unique
	// key of Level itself. QIDO-RS leaves it false (relational).
	Hierarchical bool
	// PatientRoot selects the Patient Root model: the PATIENT level
	// exists, its unique key is Patient ID, and a hierarchical query at
	// the STUDY level or below needs one. Without it (Study Root), the
	// PATIENT level is invalid and the patient's attributes are
	// attributes of the study.
	PatientRoot bool
	// CaseSensitiveNames makes PN matching case-sensitive.
	CaseSensitiveNames bool
	// FuzzyNames adds word matching to PN keys, as QIDO-RS asks for
	// with fuzzymatching=true.
	FuzzyNames bool
	// Offset skips that many matches; Limit, when not 0, returns at most
	// that many. Matches come in the order the index first recorded the
	// entities, which later records do not change, so that pages of a
	// result follow on from each other.
	Offset, Limit int
}

// UnsupportedKeys returns the matching keys of q that the index cannot
// match on, in tag order: attributes it does not keep, keys of a level
// below the query's, keys nested in sequences it does not match on, and
// the numbers of related entities. Find treats them as return keys. A
// C-FIND SCP answers each match of such a query with the Pending status
// 0xFF01 (PS3.4 C.4.1.1.4: matching on optional keys not supported). It
// returns an error wrapping ErrInvalidQuery for a query Find refuses.
func (q *Query) UnsupportedKeys() ([]tag.Tag, error) {
	a, err := analyze(q)
	if err != nil {
		return nil, err
	}
	return a.unsupported, nil
}

// Find yields the entities of q.Level that q matches: for each, a data
// set with every key of the identifier, in tag order, the values filled
// from the index (empty for attributes the index does not keep), and the
// unique key of the level. An invalid query yields one error wrapping
// ErrInvalidQuery.
//
// Find reads the matches from the database in batches as the loop asks
// for them, so a result may be of any size, and holds no connection or
// snapshot while the loop body runs: the body may put and delete.
// Entities recorded or deleted while the loop runs may or may not be
// seen; none is seen twice.
func (db *DB) Find(ctx context.Context, q *Query) iter.Seq2[*dicom.Dataset, error] {
	return func(yield func(*dicom.Dataset, error) bool) {
		p, err := db.plan(q, false)
		if err != nil {
			yield(nil, fmt.Errorf("index: find: %w", err))
			return
		}
		for r, err := range db.run(ctx, p) {
			if err != nil {
				yield(nil, fmt.Errorf("index: find: %w", err))
				return
			}
			ds, err := p.dataset(r)
			if err != nil {
				yield(nil, fmt.Errorf("index: find: %w", err))
				return
			}
			if !yield(ds, nil) {
				return
			}
		}
	}
}

// FindInstances yields the record (Header nil) of every instance at or
// below the entities q matches, as C-MOVE and C-GET retrieve them: all
// the instances of the matching patients, studies or series, or the
// matching instances. Its identifier may hold lists of UIDs. A
// hierarchical query needs the unique key of its level. Offset and Limit
// count instances. It reads in batches as Find does.
func (db *DB) FindInstances(ctx context.Context, q *Query) iter.Seq2[*Instance, error] {
	return func(yield func(*Instance, error) bool) {
		p, err := db.retrievePlan(q)
		if err != nil {
			yield(nil, fmt.Errorf("index: find instances: %w", err))
			return
		}
		for r, err := range db.run(ctx, p) {
			if err != nil {
				yield(nil, fmt.Errorf("index: find instances: %w", err))
				return
			}
			if !yield(r.instance(), nil) {
				return
			}
		}
	}
}

// CountInstances returns how many instances FindInstances would yield,
// for the remaining sub-operations of a C-MOVE or C-GET.
func (db *DB) CountInstances(ctx context.Context, q *Query) (int, error) {
	p, err := db.retrievePlan(q)
	if err != nil {
		return 0, fmt.Errorf("index: count instances: %w", err)
	}
	if len(p.residual) > 0 || p.offset > 0 || p.limit > 0 {
		n := 0
		for _, err := range db.run(ctx, p) {
			if err != nil {
				return 0, fmt.Errorf("index: count instances: %w", err)
			}
			n++
		}
		return n, nil
	}
	var n int
	query := "SELECT COUNT(*) FROM " + p.from + " WHERE " + p.whereSQL()
	if err := db.db.QueryRowContext(ctx, db.dialect.bind(query), p.args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("index: count instances: %w", err)
	}
	return n, nil
}

func (db *DB) retrievePlan(q *Query) (*plan, error) {
	if q != nil && q.Hierarchical && q.Level.valid() {
		k := uniqueKey(q.Level)
		if !hasValue(q.Identifier, k) {
			return nil, invalid("a hierarchical retrieve at the %s level needs a value of its unique key %s", q.Level, keyword(k))
		}
	}
	return db.plan(q, true)
}

// hasValue reports whether ds has a non-empty value of t.
func hasValue(ds *dicom.Dataset, t tag.Tag) bool {
	for _, v := range ds.Strings(t) {
		if strings.TrimSpace(v) != "" {
			return true
		}
	}
	return false
}

func keyword(t tag.Tag) string {
	if i, ok := tag.Lookup(t); ok && i.Keyword != "" {
		return i.Keyword + " " + t.String()
	}
	return t.String()
}

// defaultBatch is how many rows Find and FindInstances read at a time
// unless WithBatchSize says otherwise.
const defaultBatch = 256

// WithBatchSize sets how many rows Find and FindInstances read from the
// database at a time: more costs memory, fewer costs round trips.
func WithBatchSize(n int) Option {
	return func(db *DB) {
		if n > 0 {
			db.batch = n
		}
	}
}

// row is one row of a plan's result: the pk of the entity and the values
// of the plan's select list.
type row struct {
	pk   int64
	text []sql.NullString
	num  []sql.Null[int64]
	p    *plan
}

// run yields the rows of p, reading them in batches of the DB's batch
// size after the last pk read. Rows that fail a residual check are left
// out, and Offset and Limit are applied here when there are any.
func (db *DB) run(ctx context.Context, p *plan) iter.Seq2[*row, error] {
	return func(yield func(*row, error) bool) {
		batch := db.batch
		if batch <= 0 {
			batch = defaultBatch
		}
		inSQL := len(p.residual) == 0
		skip, left := p.offset, p.limit
		var after int64 = -1 << 63
		first := true
		for {
			n := batch
			if inSQL && left > 0 {
				n = min(n, left)
			}
			offset := 0
			if inSQL && first {
				offset = skip
			}
			query, args := p.batch(after, n, offset)
			rows, err := db.batchRows(ctx, p, db.dialect.bind(query), args)
			if err != nil {
				yield(nil, err)
				return
			}
			first = false
			for _, r := range rows {
				if !inSQL {
					if !p.keep(r) {
						continue
					}
					if skip > 0 {
						skip--
						continue
					}
				}
				if !yield(r, nil) {
					return
				}
				if p.limit > 0 {
					if left--; left == 0 {
						return
					}
				}
			}
			if len(rows) < n {
				return
			}
			after = rows[len(rows)-1].pk
		}
	}
}

// batch returns the statement that reads the n rows of p after the pk
// after, skipping offset rows first, and its arguments.
func (p *plan) batch(after int64, n, offset int) (string, []any) {
	query := "SELECT " + p.pk + ", " + strings.Join(p.selects, ", ") + " FROM " + p.from +
		" WHERE " + p.whereSQL() + " AND " + p.pk + " > ? ORDER BY " + p.pk + " LIMIT ?"
	args := append(slices.Clip(p.args), after, n)
	if offset > 0 {
		query += " OFFSET ?"
		args = append(args, offset)
	}
	return query, args
}

func (db *DB) batchRows(ctx context.Context, p *plan, query string, args []any) ([]*row, error) {
	rows, err := db.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	// The rows of a batch share their arrays, and one list of
	// destinations serves them all: a few allocations a batch rather
	// than a few a row.
	var (
		out   []*row
		texts []sql.NullString
		nums  []sql.Null[int64]
		dest  = make([]any, 1+len(p.kinds))
	)
	for rows.Next() {
		if len(texts) < p.texts {
			texts = make([]sql.NullString, p.texts*64)
		}
		if len(nums) < p.nums {
			nums = make([]sql.Null[int64], p.nums*64)
		}
		r := &row{p: p, text: texts[:p.texts:p.texts], num: nums[:p.nums:p.nums]}
		texts, nums = texts[p.texts:], nums[p.nums:]
		dest[0] = &r.pk
		for i, k := range p.kinds {
			if k == number {
				dest[1+i] = &r.num[p.slot[i]]
			} else {
				dest[1+i] = &r.text[p.slot[i]]
			}
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// str returns the text value of select i.
func (r *row) str(i int) string { return r.text[r.p.slot[i]].String }

// int returns the number value of select i.
func (r *row) int(i int) (int64, bool) {
	n := r.num[r.p.slot[i]]
	return n.V, n.Valid
}

// instance returns the instance record of a row of a retrieve plan.
func (r *row) instance() *Instance {
	size, _ := r.int(5)
	recv, _ := r.int(10)
	return &Instance{
		SOPInstanceUID: r.str(0), SOPClassUID: r.str(1), SeriesInstanceUID: r.str(2), StudyInstanceUID: r.str(3),
		Key: r.str(4), Size: size, SHA256: r.str(6), TransferSyntaxUID: r.str(7),
		CallingAE: r.str(8), CalledAE: r.str(9), ReceivedAt: fromMicros(recv),
	}
}

// dataset builds the answer of a Find from a row.
func (p *plan) dataset(r *row) (*dicom.Dataset, error) {
	ds := &dicom.Dataset{Elements: make([]dicom.Element, 0, len(p.out))}
	for _, o := range p.out {
		e := dicom.Element{Tag: o.tag, VR: o.vr}
		switch {
		case o.tag == tag.QueryRetrieveLevel:
			e.Values = []string{p.level.String()}
		case o.sel < 0:
		case o.kind == number:
			if n, ok := r.int(o.sel); ok {
				e.Values = []string{strconv.FormatInt(n, 10)}
			}
		case o.kind == sequence:
			e.VR = "SQ"
			if v := r.str(o.sel); v != "" {
				sub, err := dicom.ParseJSON([]byte(v))
				if err != nil {
					return nil, fmt.Errorf("%s: %w", keyword(o.tag), err)
				}
				e.Items = returnedItems(sub.Items(o.tag), o.item, p.caseSensitive)
			}
		default:
			if v := r.str(o.sel); v != "" {
				switch o.vr {
				case "LT", "ST", "UT", "UR":
					e.Values = []string{v}
				default:
					if strings.Contains(v, `\`) {
						e.Values = strings.Split(v, `\`)
					} else {
						e.Values = []string{v}
					}
				}
			}
		}
		ds.Elements = append(ds.Elements, e)
	}
	return ds, nil
}

// returnedItems returns the items of a stored sequence that a sequence
// key asks for: all of them for a key without an item or with an empty
// one; otherwise the items that match the item's keys, holding only the
// attributes it names (empty when an item lacks one).
func returnedItems(items []*dicom.Dataset, key *dicom.Dataset, caseSensitive bool) []*dicom.Dataset {
	if key == nil || len(key.Elements) == 0 {
		return items
	}
	var out []*dicom.Dataset
	for _, it := range items {
		if !matchItem(it, key, caseSensitive) {
			continue
		}
		sub := &dicom.Dataset{}
		for _, k := range key.Elements {
			if e, ok := it.Find(k.Tag); ok {
				if e.VR == "SQ" {
					c := *e
					c.Items = returnedItems(e.Items, firstItem(&k), caseSensitive)
					sub.Elements = append(sub.Elements, c)
				} else {
					sub.Elements = append(sub.Elements, *e)
				}
			} else {
				sub.Elements = append(sub.Elements, dicom.Element{Tag: k.Tag, VR: k.VR})
			}
		}
		slices.SortStableFunc(sub.Elements, func(a, b dicom.Element) int { return cmp.Compare(a.Tag, b.Tag) })
		out = append(out, sub)
	}
	return out
}

func firstItem(e *dicom.Element) *dicom.Dataset {
	if len(e.Items) > 0 {
		return e.Items[0]
	}
	return nil
}
