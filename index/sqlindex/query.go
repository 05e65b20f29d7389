package sqlindex

import (
	"github.com/pacsd/pacsd/index"

	"cmp"
	"context"
	"database/sql"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", index.ErrInvalidQuery, fmt.Sprintf(format, args...))
}

// UnsupportedKeys returns the matching keys of q that the index cannot
// match on, in tag order: attributes it does not keep, keys of a level
// below the query's, keys nested in sequences it does not match on, and
// the numbers of related entities. Find treats them as return keys. A
// C-FIND SCP answers each match of such a query with the Pending status
// 0xFF01 (PS3.4 C.4.1.1.4: matching on optional keys not supported). It
// returns an error wrapping index.ErrInvalidQuery for a query Find refuses.
func UnsupportedKeys(q *index.Query) ([]tag.Tag, error) {
	a, err := analyze(q)
	if err != nil {
		return nil, err
	}
	return a.unsupported, nil
}

// UnsupportedKeys is the package's UnsupportedKeys, for the users of a DB
// that declare the methods they call as an interface.
func (db *DB) UnsupportedKeys(q *index.Query) ([]tag.Tag, error) { return UnsupportedKeys(q) }

// Find yields the entities of q.Level that q matches: for each, a data
// set with every key of the identifier, in tag order, the values filled
// from the index (empty for attributes the index does not keep), and the
// unique key of the level. An invalid query yields one error wrapping
// index.ErrInvalidQuery.
//
// Find reads the matches from the database in batches as the loop asks
// for them, so a result may be of any size, and holds no connection or
// snapshot while the loop body runs: the body may put and delete.
// Entities recorded or deleted while the loop runs may or may not be
// seen; none is seen twice.
func (db *DB) Find(ctx context.Context, q *index.Query) iter.Seq2[*dicom.Dataset, error] {
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
func (db *DB) FindInstances(ctx context.Context, q *index.Query) iter.Seq2[*index.Instance, error] {
	return func(yield func(*index.Instance, error) bool) {
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
func (db *DB) CountInstances(ctx context.Context, q *index.Query) (int, error) {
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

func (db *DB) retrievePlan(q *index.Query) (*plan, error) {
	if q != nil && q.Hierarchical && q.Level.Valid() {
		k := q.Level.UniqueKey()
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
//
// It finds the pks of the batch first, joining only the tables that the
// conditions need, and reads the select list of those rows only. When
// an index on a range answers the conditions (a month of study dates)
// but not the order of the pks, the database sorts the pks of all the
// matches to find the first n: from the index alone, that is a sort of
// integers. Selecting the columns in the same statement would make it
// read every matching row and its patient, and sort them whole.
func (p *plan) batch(after int64, n, offset int) (string, []any) {
	pks := "SELECT " + p.pk + " FROM " + p.match +
		" WHERE " + p.whereSQL() + " AND " + p.pk + " > ? ORDER BY " + p.pk + " LIMIT ?"
	args := append(slices.Clip(p.args), after, n)
	if offset > 0 {
		pks += " OFFSET ?"
		args = append(args, offset)
	}
	query := "SELECT " + p.pk + ", " + strings.Join(p.selects, ", ") + " FROM " + p.from +
		" WHERE " + p.pk + " IN (" + pks + ") ORDER BY " + p.pk
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
func (r *row) instance() *index.Instance {
	size, _ := r.int(5)
	recv, _ := r.int(10)
	// The index writes amendments itself; one it cannot read back is
	// served as none rather than failing the whole retrieval.
	amended, _ := parseAmended(r.str(13))
	in := &index.Instance{
		SOPInstanceUID: r.str(0), SOPClassUID: r.str(1), SeriesInstanceUID: r.str(2), StudyInstanceUID: r.str(3),
		Key: r.str(4), Size: size, SHA256: r.str(6), TransferSyntaxUID: r.str(7),
		CallingAE: r.str(8), CalledAE: r.str(9), ReceivedAt: fromMicros(recv), Source: r.str(11), Principal: r.str(12),
		Amended: amended,
	}
	if at, _ := r.int(14); at != 0 {
		in.AmendedAt = fromMicros(at)
	}
	return in
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
