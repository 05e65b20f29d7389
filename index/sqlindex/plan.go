package sqlindex

import (
	"github.com/pacsd/pacsd/index"

	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
)

// A query is analyzed first (analyze: which keys match, which return,
// which the index cannot match on, and whether the query is valid), then
// planned into one SQL statement over the tables of its level and the
// levels above it, joined by their keys (plan). The statement's
// conditions are written so that an index can answer the common ones:
// UIDs, IDs and codes by equality, wild cards by a range on their literal
// prefix, dates and times by a range on their normalized columns, names
// through their name keys. What SQL cannot decide exactly (the items of a
// sequence, wild cards across the values of a multi-valued column) it
// narrows down, and Go checks the rest (residual).

// special says how a key of an attribute is matched, when not by its
// value.
type special uint8

const (
	_ special = iota // matched by value, as most attributes are
	// returnOnly attributes are returned, never matched: the numbers
	// of related entities.
	returnOnly
	// anyModality matches Modalities in Study against the series.
	anyModality
	// anySOPClass matches SOP Classes in Study against the series'
	// SOP classes.
	anySOPClass
)

// qattr is an attribute that queries match on or return, and where the
// index keeps it.
type qattr struct {
	tag   tag.Tag
	level index.Level
	vr    string
	// multi marks attributes of more than one value (VM other than 1):
	// a key matches when any of their values does.
	multi bool
	// expr is the SQL of the stored value, norm of the normalized one
	// (DA, TM, DT).
	expr, norm string
	kind       kind
	match      special
}

var levelAlias = [...]string{index.PatientLevel: "p", index.StudyLevel: "st", index.SeriesLevel: "se", index.ImageLevel: "i"}
var levelTable = [...]string{index.PatientLevel: "patient", index.StudyLevel: "study", index.SeriesLevel: "series", index.ImageLevel: "instance"}

// joinFrom joins the table of level from to those of the levels above
// it up to level top: "study st JOIN patient p ON p.pk = st.patient_fk".
func joinFrom(from, top index.Level) string {
	s := levelTable[from] + " " + levelAlias[from]
	for l := from - 1; l >= top; l-- {
		s += " JOIN " + levelTable[l] + " " + levelAlias[l] + " ON " + levelAlias[l] + ".pk = " + levelAlias[l+1] + "." + levelTable[l] + "_fk"
	}
	return s
}

// levelRef finds the aliases of the levels' tables in SQL: "st." but
// not "x.study_fk" or "pp.pk".
var levelRef = regexp.MustCompile(`\b(p|st|se|i)\.`)

// topLevel returns the highest level whose table the SQL conditions
// name, or from when they name none above it.
func topLevel(conds []string, from index.Level) index.Level {
	top := from
	for _, c := range conds {
		for _, m := range levelRef.FindAllStringSubmatch(c, -1) {
			if l := index.Level(slices.Index(levelAlias[:], m[1])); l < top {
				top = l
			}
		}
	}
	return top
}

// queryAttrs holds, by tag, the attributes queries know, at each level
// that keeps them (Timezone Offset From UTC is kept at three).
var queryAttrs = sync.OnceValue(func() map[tag.Tag][]*qattr {
	m := map[tag.Tag][]*qattr{}
	add := func(a *qattr) { m[a.tag] = append(m[a.tag], a) }
	levels := []struct {
		l    index.Level
		cols []column
	}{{index.PatientLevel, patientColumns}, {index.StudyLevel, studyColumns}, {index.SeriesLevel, seriesColumns}, {index.ImageLevel, instanceColumns}}
	for _, lv := range levels {
		for i := range lv.cols {
			c := &lv.cols[i]
			if c.in != 0 {
				continue // matched as a key of its sequence
			}
			a := &qattr{tag: c.tag, level: lv.l, vr: vr(c.tag), kind: c.kind, expr: levelAlias[lv.l] + "." + c.name}
			if info, ok := tag.Lookup(c.tag); ok {
				a.multi = info.VM != "1"
			}
			switch c.kind {
			case date, timeOfDay, dateTime:
				a.norm = a.expr + "_norm"
			case sequence:
				a.vr = "SQ"
			}
			add(a)
		}
	}
	for _, a := range []*qattr{
		{tag: tag.SOPInstanceUID, level: index.ImageLevel, vr: "UI", expr: "i.sop_instance_uid"},
		{tag: tag.SOPClassUID, level: index.ImageLevel, vr: "UI", expr: "i.sop_class_uid"},
		{tag: tag.AvailableTransferSyntaxUID, level: index.ImageLevel, vr: "UI", expr: "i.transfer_syntax_uid"},
		{tag: tag.ModalitiesInStudy, level: index.StudyLevel, vr: "CS", multi: true, expr: "st.modalities_in_study", match: anyModality},
		{tag: tag.SOPClassesInStudy, level: index.StudyLevel, vr: "UI", multi: true, expr: "st.sop_classes_in_study", match: anySOPClass},
		{tag: tag.NumberOfPatientRelatedStudies, level: index.PatientLevel, expr: "p.number_of_patient_related_studies"},
		{tag: tag.NumberOfPatientRelatedSeries, level: index.PatientLevel, expr: "p.number_of_patient_related_series"},
		{tag: tag.NumberOfPatientRelatedInstances, level: index.PatientLevel, expr: "p.number_of_patient_related_instances"},
		{tag: tag.NumberOfStudyRelatedSeries, level: index.StudyLevel, expr: "st.number_of_study_related_series"},
		{tag: tag.NumberOfStudyRelatedInstances, level: index.StudyLevel, expr: "st.number_of_study_related_instances"},
		{tag: tag.NumberOfSeriesRelatedInstances, level: index.SeriesLevel, expr: "se.number_of_series_related_instances"},
	} {
		if a.vr == "" {
			a.vr, a.kind, a.match = "IS", number, returnOnly
		}
		add(a)
	}
	return m
})

// sequenceKeys holds, by sequence, the attributes of its items that the
// index keeps in a column of their own, joined over the items, and that
// SQL can match on.
var sequenceKeys = sync.OnceValue(func() map[tag.Tag]map[tag.Tag]string {
	m := map[tag.Tag]map[tag.Tag]string{}
	for l, cols := range [][]column{index.PatientLevel: patientColumns, index.StudyLevel: studyColumns, index.SeriesLevel: seriesColumns, index.ImageLevel: instanceColumns} {
		for _, c := range cols {
			if c.in == 0 {
				continue
			}
			if m[c.in] == nil {
				m[c.in] = map[tag.Tag]string{}
			}
			m[c.in][c.tag] = levelAlias[l] + "." + c.name
		}
	}
	return m
})

// resolve returns the attribute with tag t of level l or the nearest
// level above it, or nil.
func resolve(t tag.Tag, l index.Level) *qattr {
	var best *qattr
	for _, a := range queryAttrs()[t] {
		if a.level <= l && (best == nil || a.level > best.level) {
			best = a
		}
	}
	return best
}

// key is a key of an identifier, as analyze understands it.
type key struct {
	el   dicom.Element
	attr *qattr // nil when the index does not keep it at or above the level
	// values are the values to match, nil for a return key.
	values []string
	// items are the keys of a sequence key's item that have values, and
	// item the item itself.
	items []itemKey
	item  *dicom.Dataset
}

type itemKey struct {
	el     dicom.Element
	values []string
	col    string // the SQL of the column that keeps it, or ""
}

type analysis struct {
	q           *index.Query
	keys        []*key
	unsupported []tag.Tag
	// tz is the identifier's Timezone Offset From UTC, applied to DT keys
	// without an offset.
	tz string
}

func analyze(q *index.Query) (*analysis, error) {
	if q == nil {
		return nil, invalid("no query")
	}
	if !q.Level.Valid() {
		return nil, invalid("unknown Query/Retrieve Level %v", q.Level)
	}
	if q.Level == index.PatientLevel && !q.PatientRoot {
		return nil, invalid("the PATIENT level is not part of the Study Root model")
	}
	if q.Offset < 0 || q.Limit < 0 {
		return nil, invalid("negative offset or limit")
	}
	ident := q.Identifier
	if ident == nil {
		ident = &dicom.Dataset{}
	}
	a := &analysis{q: q, tz: strings.TrimSpace(ident.First(tag.TimezoneOffsetFromUTC))}
	if _, ok := parseOffset(a.tz); a.tz != "" && !ok {
		return nil, invalid("Timezone Offset From UTC %q is not of the form &ZZXX", a.tz)
	}
	for l := q.Level + 1; l <= index.ImageLevel; l++ {
		if _, ok := ident.Find(l.UniqueKey()); ok {
			return nil, invalid("%s, the unique key of the %s level, is not allowed in a query at the %s level", keyword(l.UniqueKey()), l, q.Level)
		}
	}
	if q.Hierarchical {
		for l := index.PatientLevel; l < q.Level; l++ {
			if l == index.PatientLevel && !q.PatientRoot {
				continue
			}
			k := l.UniqueKey()
			e, _ := ident.Find(k)
			var vals []string
			if e != nil {
				var err error
				if vals, err = keyValues(vr(k), e, a.tz); err != nil {
					return nil, err
				}
			}
			switch {
			case len(vals) == 0:
				return nil, invalid("a hierarchical query at the %s level needs a value of %s, the unique key of the %s level", q.Level, keyword(k), l)
			case l == index.PatientLevel && (len(vals) > 1 || hasWildcard(vals[0])):
				return nil, invalid("%s must be a single value without wild cards in a hierarchical query", keyword(k))
			}
		}
	}

	elems := slices.Clone(ident.Elements)
	slices.SortStableFunc(elems, func(x, y dicom.Element) int { return cmp.Compare(x.Tag, y.Tag) })
	for _, e := range elems {
		if e.Tag == tag.SpecificCharacterSet || e.Tag.Element() == 0 || len(a.keys) > 0 && a.keys[len(a.keys)-1].el.Tag == e.Tag {
			continue
		}
		k := &key{el: e}
		a.keys = append(a.keys, k)
		if e.Tag == tag.QueryRetrieveLevel {
			continue
		}
		k.attr = resolve(e.Tag, q.Level)
		if e.VR == "SQ" || k.attr != nil && k.attr.kind == sequence {
			if err := a.sequence(k); err != nil {
				return nil, err
			}
			continue
		}
		kvr := e.VR
		if k.attr != nil {
			kvr = k.attr.vr
		}
		vals, err := keyValues(kvr, &e, a.tz)
		if err != nil {
			return nil, err
		}
		switch {
		case vals == nil || e.Tag == tag.TimezoneOffsetFromUTC:
		case k.attr == nil || k.attr.match == returnOnly:
			a.unsupported = append(a.unsupported, e.Tag)
		default:
			k.values = vals
		}
	}
	return a, nil
}

// sequence analyzes a sequence key.
func (a *analysis) sequence(k *key) error {
	if len(k.el.Items) > 1 {
		return invalid("the sequence key %s has %d items; Sequence Matching takes one", keyword(k.el.Tag), len(k.el.Items))
	}
	if len(k.el.Items) == 0 {
		return nil
	}
	k.item = k.el.Items[0]
	cols := sequenceKeys()[k.el.Tag]
	matched, other := false, false
	for _, ie := range k.item.Elements {
		if ie.VR == "SQ" {
			if hasKeys(&ie) {
				other = true // nested sequences are returned, not matched
			}
			continue
		}
		vals, err := keyValues(vr(ie.Tag), &ie, a.tz)
		if err != nil {
			return fmt.Errorf("%s: %w", keyword(k.el.Tag), err)
		}
		if vals == nil {
			continue
		}
		col := cols[ie.Tag]
		matched = matched || col != ""
		k.items = append(k.items, itemKey{el: ie, values: vals, col: col})
	}
	if k.attr == nil || !matched {
		if len(k.items) > 0 || other {
			a.unsupported = append(a.unsupported, k.el.Tag)
		}
		k.items = nil
	} else if other {
		a.unsupported = append(a.unsupported, k.el.Tag)
	}
	return nil
}

// hasKeys reports whether a sequence key holds a key with a value.
func hasKeys(e *dicom.Element) bool {
	for _, it := range e.Items {
		for _, ie := range it.Elements {
			if ie.VR == "SQ" && hasKeys(&ie) || ie.VR != "SQ" && slices.ContainsFunc(ie.Values, func(v string) bool { return strings.TrimSpace(v) != "" }) {
				return true
			}
		}
	}
	return false
}

// keyValues returns the values of a key of VR kvr to match, or nil for a
// universal key, after checking them: wild cards only in the VRs that
// take them, ranges well formed, integers where the index keeps
// integers.
func keyValues(kvr string, e *dicom.Element, tz string) ([]string, error) {
	var out []string
	for _, v := range e.Values {
		parts := []string{v}
		if kvr == "UI" {
			parts = strings.Split(v, ",")
		}
		for _, p := range parts {
			p = strings.TrimSpace(p)
			switch {
			case p == "":
				continue
			case p == "*":
				return nil, nil
			case p == emptyValue:
			case hasWildcard(p) && kvr == "UI":
				return nil, invalid("wild card in the UID key %s: %q", keyword(e.Tag), p)
			case hasWildcard(p) && !wildcardVRs[kvr]:
				return nil, invalid("wild card in %s, a key of VR %s: %q", keyword(e.Tag), kvr, p)
			case kvr == "DA" || kvr == "TM" || kvr == "DT":
				if _, err := parseRange(kvr, p, tz); err != nil {
					return nil, invalid("%s: %v", keyword(e.Tag), err)
				}
			case kvr == "IS" || kvr == "US" || kvr == "UL" || kvr == "SS" || kvr == "SL":
				if _, err := strconv.ParseInt(strings.TrimPrefix(p, "+"), 10, 64); err != nil {
					return nil, invalid("%s: %q is not an integer", keyword(e.Tag), p)
				}
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// plan is a query planned into SQL: the rows of the table of one level,
// joined to the levels above, that the conditions select, in the order
// of their pk.
type plan struct {
	level index.Level // the query's
	// from joins the table of the level of the rows to all the levels
	// above it, for the select list; match joins only those that the
	// conditions need.
	from, match, pk string
	where           []string
	args            []any
	// selects and kinds are the select list after the pk, and how each
	// reads back: into slot of a row's numbers or texts, of which a row
	// has nums and texts.
	selects     []string
	kinds       []kind
	slot        []int
	nums, texts int
	// out are the elements of a Find's answer.
	out      []outKey
	residual []residual
	offset   int
	limit    int

	caseSensitive, fuzzyNames bool
	dialect                   Dialect
}

type outKey struct {
	tag  tag.Tag
	vr   string
	kind kind
	sel  int            // the select that holds its value, or -1
	item *dicom.Dataset // a sequence key's item
}

// residual is a check a row must pass besides the SQL conditions, on the
// value of one select.
type residual struct {
	sel   int
	check func(v string) bool
}

func (p *plan) whereSQL() string {
	if len(p.where) == 0 {
		return "1 = 1"
	}
	return strings.Join(p.where, " AND ")
}

func (p *plan) keep(r *row) bool {
	for _, c := range p.residual {
		if !c.check(r.str(c.sel)) {
			return false
		}
	}
	return true
}

func (p *plan) addSelect(expr string, k kind) int {
	if i := slices.Index(p.selects, expr); i >= 0 {
		return i
	}
	p.selects = append(p.selects, expr)
	p.kinds = append(p.kinds, k)
	if k == number {
		p.slot = append(p.slot, p.nums)
		p.nums++
	} else {
		p.slot = append(p.slot, p.texts)
		p.texts++
	}
	return len(p.selects) - 1
}

// retrieveSelects are the columns of an instance record, in the order
// row.instance reads them.
var retrieveSelects = []struct {
	expr string
	kind kind
}{
	{"i.sop_instance_uid", text}, {"i.sop_class_uid", text}, {"i.series_instance_uid", text}, {"i.study_instance_uid", text},
	{"i.object_key", text}, {"i.size", number}, {"i.sha256", text}, {"i.transfer_syntax_uid", text},
	{"i.calling_ae", text}, {"i.called_ae", text}, {"i.received_at", number}, {"i.source", text}, {"i.principal", text},
	{"i.amended", text}, {"i.amended_at", number},
}

// plan plans q: over the table of its level for Find, over the instance
// table, selecting instance records, for FindInstances (retrieve).
func (db *DB) plan(q *index.Query, retrieve bool) (*plan, error) {
	a, err := analyze(q)
	if err != nil {
		return nil, err
	}
	from := q.Level
	if retrieve {
		from = index.ImageLevel
	}
	p := &plan{
		level: q.Level, from: joinFrom(from, index.PatientLevel), pk: levelAlias[from] + ".pk",
		offset: q.Offset, limit: q.Limit, caseSensitive: q.CaseSensitiveNames, fuzzyNames: q.FuzzyNames,
		dialect: db.dialect,
	}
	if retrieve {
		for _, s := range retrieveSelects {
			p.addSelect(s.expr, s.kind)
		}
	} else {
		p.outputs(a)
	}
	p.nhsCondition(a, db.nhsIssuers)
	for _, k := range a.keys {
		if err := p.condition(a, k, from); err != nil {
			return nil, err
		}
	}
	p.restrictIssuers(q.Issuers)
	p.match = joinFrom(from, topLevel(p.where, from))
	p.args = cleanArgs(p.args)
	return p, nil
}

// restrictIssuers keeps to the patients of the issuers given, when the
// query is restricted (index.Query.Issuers). Every level's FROM joins the
// patient table, so one condition serves them all.
func (p *plan) restrictIssuers(issuers []string) {
	switch {
	case issuers == nil:
	case len(issuers) == 0:
		p.where = append(p.where, "1 = 0")
	default:
		p.where = append(p.where, "p.issuer_of_patient_id IN ("+params(len(issuers))+")")
		for _, is := range issuers {
			p.args = append(p.args, is)
		}
	}
}

// outputs lays out the answer of a Find: every key of the identifier
// and the unique key of the level.
func (p *plan) outputs(a *analysis) {
	unique := p.level.UniqueKey()
	hasUnique := false
	for _, k := range a.keys {
		o := outKey{tag: k.el.Tag, vr: k.el.VR, sel: -1, item: k.item}
		if o.vr == "" {
			o.vr = vr(o.tag)
		}
		if k.attr != nil {
			o.vr, o.kind = k.attr.vr, k.attr.kind
			o.sel = p.addSelect(k.attr.expr, k.attr.kind)
		}
		hasUnique = hasUnique || o.tag == unique
		p.out = append(p.out, o)
	}
	if !hasUnique {
		attr := resolve(unique, p.level)
		p.out = append(p.out, outKey{tag: unique, vr: attr.vr, kind: attr.kind, sel: p.addSelect(attr.expr, attr.kind)})
		slices.SortStableFunc(p.out, func(x, y outKey) int { return cmp.Compare(x.tag, y.tag) })
	}
}

// condition adds the conditions of a matching key.
func (p *plan) condition(a *analysis, k *key, from index.Level) error {
	attr := k.attr
	switch {
	case len(k.items) > 0:
		p.sequenceCondition(k)
		return nil
	case k.values == nil:
		return nil
	case attr.match == anyModality || attr.match == anySOPClass:
		p.studyCondition(k)
		return nil
	case attr.kind == name:
		p.nameCondition(k, owner(attr.level, from))
		return nil
	}
	var ors []string
	var uids []any
	var cross bool
	for _, v := range k.values {
		switch {
		case v == emptyValue && attr.kind == number:
			ors = append(ors, attr.expr+" IS NULL")
		case v == emptyValue:
			ors = append(ors, attr.expr+" = ''")
		case attr.norm != "":
			r, err := parseRange(attr.vr, v, a.tz)
			if err != nil {
				return invalid("%s: %v", keyword(attr.tag), err)
			}
			switch {
			case r.lo == r.hi:
				ors = append(ors, attr.norm+" = ?")
				p.args = append(p.args, r.lo)
			case r.hi == "":
				ors = append(ors, attr.norm+" >= ?")
				p.args = append(p.args, r.lo)
			default:
				// "0" is below every normalized value and above the
				// empty one, which stands for none.
				ors = append(ors, attr.norm+" >= ? AND "+attr.norm+" <= ?")
				p.args = append(p.args, cmp.Or(r.lo, "0"), r.hi)
			}
		case attr.kind == number:
			n, _ := strconv.ParseInt(strings.TrimPrefix(v, "+"), 10, 64)
			ors = append(ors, attr.expr+" = ?")
			p.args = append(p.args, n)
		case attr.vr == "UI" && !attr.multi:
			uids = append(uids, v)
		case attr.multi:
			ors = append(ors, p.dialect.anyValue(attr.expr, v, &p.args))
			cross = cross || hasWildcard(v) && crossesValues(v)
		case hasWildcard(v):
			ors = append(ors, p.dialect.pattern(attr.expr, v, &p.args))
		default:
			ors = append(ors, attr.expr+" = ?")
			p.args = append(p.args, v)
		}
	}
	switch len(uids) {
	case 0:
	case 1:
		ors = append(ors, attr.expr+" = ?")
	default:
		ors = append(ors, attr.expr+" IN ("+params(len(uids))+")")
	}
	p.args = append(p.args, uids...)
	p.where = append(p.where, or(ors))
	if cross && p.dialect == SQLite {
		values, kvr := k.values, attr.vr
		p.residual = append(p.residual, residual{sel: p.addSelect(attr.expr, text), check: func(s string) bool {
			return matchValues(kvr, values, strings.Split(s, `\`), true)
		}})
	}
	return nil
}

func or(conds []string) string {
	if len(conds) == 1 {
		return "(" + conds[0] + ")"
	}
	return "((" + strings.Join(conds, ") OR (") + "))"
}

// owner returns the SQL of the pk of the row of level l that a row of
// level from belongs to: the foreign key of the level below l, which an
// index answers, rather than the pk of the joined row.
func owner(l, from index.Level) string {
	if l == from {
		return levelAlias[l] + ".pk"
	}
	return levelAlias[l+1] + "." + levelTable[l] + "_fk"
}

// nameCondition matches a PN key through the name keys of its level
// (see names.go).
func (p *plan) nameCondition(k *key, ownerPK string) {
	attr := k.attr
	keys := levelTable[attr.level] + "_name_key"
	fk := levelTable[attr.level] + "_fk"
	sub := func(part string, v string, fuzzy bool) string {
		cond := ownerPK + " IN (SELECT " + fk + " FROM " + keys + " WHERE tag = ? AND " + part
		p.args = append(p.args, int64(attr.tag))
		upper := strings.ToUpper(v)
		switch {
		case fuzzy || !p.caseSensitive && hasWildcard(v):
			cond += " AND " + p.dialect.pattern("norm", upper, &p.args)
		case !p.caseSensitive:
			cond += " AND norm = ?"
			p.args = append(p.args, upper)
		case hasWildcard(v):
			cond += " AND " + p.dialect.pattern("norm", upper, &p.args) + " AND " + p.dialect.pattern("raw", v, &p.args)
		default:
			cond += " AND norm = ? AND raw = ?"
			p.args = append(p.args, upper, v)
		}
		return cond + ")"
	}
	var ors []string
	for _, v := range k.values {
		if v == emptyValue {
			ors = append(ors, attr.expr+" = ''")
			continue
		}
		q := tidyName(v)
		var alts []string
		if groups := strings.Split(q, "="); len(groups) > 1 {
			var ands []string
			for i, g := range groups {
				if g != "" && g != "*" {
					ands = append(ands, sub("part = "+strconv.Itoa(partAlphabetic+i), g, false))
				}
			}
			alts = append(alts, strings.Join(ands, " AND "))
		} else if q != "" {
			alts = append(alts, sub("part <= "+strconv.Itoa(partPhonetic), q, false))
		}
		if p.fuzzyNames {
			var ands []string
			for _, w := range fuzzyWords(v) {
				ands = append(ands, sub("part = "+strconv.Itoa(partWord), w+"*", true))
			}
			if len(ands) > 0 {
				alts = append(alts, strings.Join(ands, " AND "))
			}
		}
		if len(alts) == 0 {
			ors = append(ors, "1 = 1")
			continue
		}
		ors = append(ors, strings.Join(alts, " OR "))
	}
	p.where = append(p.where, or(ors))
}

// fuzzyWords returns the words of a PN key for fuzzy matching: its
// components split at spaces, without the trailing wild cards that
// fuzzy matching adds anyway.
func fuzzyWords(v string) []string {
	var out []string
	for _, w := range strings.FieldsFunc(v, func(r rune) bool { return r == '^' || r == '=' || r == ' ' }) {
		if w = strings.TrimRight(w, "*"); w != "" {
			out = append(out, w)
		}
	}
	return out
}

// studyCondition matches Modalities in Study and SOP Classes in Study
// against the series of the study, which an index answers, rather than
// against the study's list.
func (p *plan) studyCondition(k *key) {
	var ors []string
	var uids []any
	for _, v := range k.values {
		switch {
		case v == emptyValue:
			ors = append(ors, k.attr.expr+" = ''")
		case k.attr.match == anySOPClass:
			uids = append(uids, v)
		case hasWildcard(v):
			ors = append(ors, "EXISTS (SELECT 1 FROM series x WHERE x.study_fk = st.pk AND "+p.dialect.pattern("x.modality", v, &p.args)+")")
		default:
			ors = append(ors, "EXISTS (SELECT 1 FROM series x WHERE x.study_fk = st.pk AND x.modality = ?)")
			p.args = append(p.args, v)
		}
	}
	if len(uids) > 0 {
		ors = append(ors, "EXISTS (SELECT 1 FROM series x JOIN series_sop_class c ON c.series_fk = x.pk WHERE x.study_fk = st.pk AND c.sop_class_uid IN ("+params(len(uids))+"))")
		p.args = append(p.args, uids...)
	}
	p.where = append(p.where, or(ors))
}

// sequenceCondition matches a sequence key: SQL on the columns that keep
// the item keys, joined over the items, and Go on the items themselves
// when that cannot be exact: more than one key to match in one item, a
// key without a column, or a wild card that could match across items.
func (p *plan) sequenceCondition(k *key) {
	exact := len(k.items) == 1
	for _, ik := range k.items {
		if ik.col == "" {
			exact = false
			continue
		}
		var ors []string
		for _, v := range ik.values {
			if v == emptyValue {
				exact = false // an item without the attribute also matches
				ors = append(ors, "1 = 1")
				continue
			}
			ors = append(ors, p.dialect.anyValue(ik.col, v, &p.args))
			if hasWildcard(v) && crossesValues(v) && p.dialect == SQLite {
				exact = false
			}
		}
		p.where = append(p.where, or(ors))
	}
	if !exact {
		seq, item, cs := k.el.Tag, k.item, p.caseSensitive
		p.residual = append(p.residual, residual{sel: p.addSelect(k.attr.expr, sequence), check: func(s string) bool {
			if s == "" {
				return false
			}
			ds, err := dicom.ParseJSON([]byte(s))
			if err != nil {
				return false
			}
			return slices.ContainsFunc(ds.Items(seq), func(it *dicom.Dataset) bool { return matchItem(it, item, cs) })
		}})
	}
}

// matchItem reports whether an item of a stored sequence matches the
// keys of a sequence key's item. Nested sequences are not matched.
func matchItem(it, keys *dicom.Dataset, caseSensitive bool) bool {
	for _, ke := range keys.Elements {
		if ke.VR == "SQ" {
			continue
		}
		kvr := vr(ke.Tag)
		vals, err := keyValues(kvr, &ke, "")
		if err != nil {
			return false
		}
		if vals != nil && !matchValues(kvr, vals, it.Strings(ke.Tag), caseSensitive) {
			return false
		}
	}
	return true
}

// matchValues reports whether any of the stored values matches any of
// the values of a key, by the rules the SQL of a plan follows.
func matchValues(kvr string, keys, stored []string, caseSensitive bool) bool {
	empty := !slices.ContainsFunc(stored, func(s string) bool { return strings.TrimSpace(s) != "" })
	for _, k := range keys {
		if k == emptyValue {
			if empty {
				return true
			}
			continue
		}
		for _, s := range stored {
			if matchValue(kvr, k, strings.TrimSpace(s), caseSensitive) {
				return true
			}
		}
	}
	return false
}

func matchValue(kvr, k, s string, caseSensitive bool) bool {
	switch kvr {
	case "DA", "TM", "DT":
		r, err := parseRange(kvr, k, "")
		return err == nil && r.contains(normalize(kvr, s, ""))
	case "PN":
		return matchName(k, s, caseSensitive)
	case "UI":
		return k == s
	}
	if wildcardVRs[kvr] {
		return wildMatch(k, s)
	}
	return k == s
}

// matchName matches a PN key against a stored PN value as nameCondition
// does, without fuzzy matching.
func matchName(k, s string, caseSensitive bool) bool {
	norm := normalizeName
	if caseSensitive {
		norm = tidyName
	}
	k, s = norm(k), norm(s)
	kg := strings.Split(k, "=")
	for _, v := range strings.Split(s, `\`) {
		groups := strings.Split(v, "=")
		if len(kg) > 1 {
			ok := true
			for i, g := range kg {
				if g != "" && (i >= len(groups) || !wildMatch(g, groups[i])) {
					ok = false
				}
			}
			if ok {
				return true
			}
			continue
		}
		if wildMatch(k, v) || slices.ContainsFunc(groups, func(g string) bool { return g != "" && wildMatch(k, g) }) {
			return true
		}
	}
	return false
}
