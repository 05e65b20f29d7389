package retention

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
)

// ErrInvalid reports a rule that cannot be applied.
var ErrInvalid = errors.New("retention: invalid rule")

// Period is a length of calendar time: years, months and days, as the
// configuration writes it ("8y", "6m", "30d", "2w").
type Period struct {
	Years, Months, Days int
}

// ParsePeriod reads a period: a number followed by y, m, w or d.
func ParsePeriod(s string) (Period, error) {
	s = strings.TrimSpace(s)
	if len(s) < 2 {
		return Period{}, fmt.Errorf("%w: period %q: want a number and y, m, w or d", ErrInvalid, s)
	}
	n, err := strconv.Atoi(s[:len(s)-1])
	if err != nil || n <= 0 {
		return Period{}, fmt.Errorf("%w: period %q: want a positive number and y, m, w or d", ErrInvalid, s)
	}
	switch s[len(s)-1] {
	case 'y':
		return Period{Years: n}, nil
	case 'm':
		return Period{Months: n}, nil
	case 'w':
		return Period{Days: 7 * n}, nil
	case 'd':
		return Period{Days: n}, nil
	}
	return Period{}, fmt.Errorf("%w: period %q: unit is not y, m, w or d", ErrInvalid, s)
}

// After returns t plus p.
func (p Period) After(t time.Time) time.Time { return t.AddDate(p.Years, p.Months, p.Days) }

func (p Period) IsZero() bool { return p == Period{} }

func (p Period) String() string {
	switch {
	case p.IsZero():
		return ""
	case p.Months == 0 && p.Days == 0:
		return strconv.Itoa(p.Years) + "y"
	case p.Years == 0 && p.Days == 0:
		return strconv.Itoa(p.Months) + "m"
	case p.Years == 0 && p.Months == 0:
		return strconv.Itoa(p.Days) + "d"
	}
	return fmt.Sprintf("%dy%dm%dd", p.Years, p.Months, p.Days)
}

func (p *Period) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%w: period: want a string such as \"8y\"", ErrInvalid)
	}
	v, err := ParsePeriod(s)
	if err != nil {
		return err
	}
	*p = v
	return nil
}

func (p Period) MarshalJSON() ([]byte, error) { return json.Marshal(p.String()) }

// ageKey is the condition of When on the patient's age at the study.
const ageKey = "age_at_study_under"

// Rule is one retention rule of the configuration, such as
// {"when": {"Modality": "MG"}, "keep": "8y", "from": "StudyDate"} or
// {"when": {"age_at_study_under": "18y"}, "keep_until_age": "25y"}.
type Rule struct {
	// When maps DICOM keywords to values the study must match, as query
	// keys do (wild cards, ranges, lists): attributes of the patient and
	// the study, and Modality, which matches any series of the study.
	// The key age_at_study_under (a period) covers studies of patients
	// younger than that when the study was made.
	When map[string]string `json:"when,omitempty"`
	// Keep is how long a study is kept from its date From (StudyDate,
	// the default).
	Keep Period `json:"keep,omitzero"`
	From string `json:"from,omitempty"`
	// KeepUntilAge keeps a study until the patient reaches that age.
	KeepUntilAge Period `json:"keep_until_age,omitzero"`
}

// String describes r for the log of deletions.
func (r Rule) String() string {
	var when []string
	for k, v := range r.When {
		when = append(when, k+"="+v)
	}
	sort.Strings(when)
	keep := "keep " + r.Keep.String() + " from " + r.from()
	if !r.KeepUntilAge.IsZero() {
		keep = "keep until age " + r.KeepUntilAge.String()
	}
	return "retention rule (" + strings.Join(when, ", ") + "): " + keep
}

func (r Rule) from() string {
	if r.From == "" {
		return "StudyDate"
	}
	return r.From
}

// Check reports what is wrong with r.
func (r Rule) Check() error {
	if r.Keep.IsZero() == r.KeepUntilAge.IsZero() {
		return fmt.Errorf("%w: a rule needs one of keep and keep_until_age", ErrInvalid)
	}
	if !r.KeepUntilAge.IsZero() && r.From != "" {
		return fmt.Errorf("%w: from goes with keep, not keep_until_age", ErrInvalid)
	}
	if f := r.from(); f != "StudyDate" && f != "PatientBirthDate" {
		return fmt.Errorf("%w: from %q: want StudyDate or PatientBirthDate", ErrInvalid, f)
	}
	_, err := r.query()
	return err
}

// query returns the STUDY query that finds the studies r covers, but
// for the age condition, with the keys Expiry reads.
func (r Rule) query() (*index.Query, error) {
	id := &dicom.Dataset{}
	set := func(t tag.Tag, v string) {
		info, _ := tag.Lookup(t)
		if e, ok := id.Find(t); ok {
			e.Values = []string{v}
			return
		}
		var vals []string
		if v != "" {
			vals = []string{v}
		}
		id.Elements = append(id.Elements, dicom.Element{Tag: t, VR: info.VR, Values: vals})
	}
	for _, t := range []tag.Tag{tag.StudyInstanceUID, tag.StudyDate, tag.PatientBirthDate, tag.PatientID, tag.PatientName} {
		set(t, "")
	}
	for k, v := range r.When {
		if k == ageKey {
			if _, err := ParsePeriod(v); err != nil {
				return nil, err
			}
			continue
		}
		t, ok := tag.ByKeyword(k)
		if !ok {
			return nil, fmt.Errorf("%w: when: %q is not a DICOM keyword", ErrInvalid, k)
		}
		if t == tag.Modality {
			t = tag.ModalitiesInStudy
		}
		if v == "" {
			return nil, fmt.Errorf("%w: when: %s has no value", ErrInvalid, k)
		}
		set(t, v)
	}
	sort.Slice(id.Elements, func(i, j int) bool { return id.Elements[i].Tag < id.Elements[j].Tag })
	return &index.Query{Level: index.StudyLevel, Identifier: id}, nil
}

// expiry returns when a study found by r's query stops being kept, and
// whether r covers it at all.
func (r Rule) expiry(ds *dicom.Dataset) (t time.Time, covered, known bool) {
	studyDate, okStudy := date(ds.First(tag.StudyDate))
	birth, okBirth := date(ds.First(tag.PatientBirthDate))
	if v, ok := r.When[ageKey]; ok {
		under, _ := ParsePeriod(v)
		if !okStudy || !okBirth {
			// Whether the rule covers the study cannot be told; it is
			// kept.
			return time.Time{}, true, false
		}
		if !studyDate.Before(under.After(birth)) {
			return time.Time{}, false, false
		}
	}
	switch {
	case !r.KeepUntilAge.IsZero():
		return r.KeepUntilAge.After(birth), true, okBirth
	case r.from() == "PatientBirthDate":
		return r.Keep.After(birth), true, okBirth
	}
	return r.Keep.After(studyDate), true, okStudy
}

func date(v string) (time.Time, bool) {
	t, err := time.Parse("20060102", strings.TrimSpace(v))
	return t, err == nil
}

// Finder finds studies: the index's Find.
type Finder interface {
	Find(ctx context.Context, q *index.Query) iter.Seq2[*dicom.Dataset, error]
}

// Expired is a study whose retention has run out.
type Expired struct {
	StudyInstanceUID string
	PatientID        string
	PatientName      string
	StudyDate        string
	// Until is when the last rule covering it ran out, and Rule that
	// rule.
	Until time.Time
	Rule  Rule
}

// Due returns the studies whose retention has run out at now under
// rules, ordered by Study Instance UID.
func Due(ctx context.Context, idx Finder, rules []Rule, now time.Time) ([]Expired, error) {
	type verdict struct {
		Expired
		keep bool // some rule keeps it for now, or its dates cannot be read
	}
	studies := map[string]*verdict{}
	for i, r := range rules {
		q, err := r.query()
		if err != nil {
			return nil, fmt.Errorf("retention rule %d: %w", i+1, err)
		}
		for ds, err := range idx.Find(ctx, q) {
			if err != nil {
				return nil, fmt.Errorf("retention rule %d: %w", i+1, err)
			}
			until, covered, known := r.expiry(ds)
			if !covered {
				continue
			}
			uid := ds.First(tag.StudyInstanceUID)
			v := studies[uid]
			if v == nil {
				v = &verdict{Expired: Expired{StudyInstanceUID: uid, PatientID: ds.First(tag.PatientID),
					PatientName: ds.First(tag.PatientName), StudyDate: ds.First(tag.StudyDate)}}
				studies[uid] = v
			}
			if !known || until.After(now) {
				v.keep = true
			}
			if known && !until.Before(v.Until) {
				v.Until, v.Rule = until, r
			}
		}
	}
	var out []Expired
	for _, v := range studies {
		if !v.keep {
			out = append(out, v.Expired)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StudyInstanceUID < out[j].StudyInstanceUID })
	return out, nil
}
