package dicomweb

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/sqlindex"
)

// TestParseSearchValues checks that every spelling of a list a client may
// use gives the key the same values (PS3.18 §8.3.4.1), and that what
// cannot be served is refused with a reason rather than matching less.
func TestParseSearchValues(t *testing.T) {
	manyUIDs := make([]string, 1001)
	for i := range manyUIDs {
		manyUIDs[i] = fmt.Sprintf("1.2.3.%d", i)
	}
	manyFields := make([]string, 600)
	for i := range manyFields {
		manyFields[i] = fmt.Sprintf("0009%04X", 0x1000+i)
	}
	for _, c := range []struct {
		name, query, study string
		level              index.Level
		key                tag.Tag
		want               []string // nil: a key without values (universal)
		err                string   // part of the reason of a 400
		noMatch            bool
	}{
		{name: "backslash", query: `SOPInstanceUID=1.2.3%5C1.2.4`, level: index.ImageLevel, key: tag.SOPInstanceUID, want: []string{"1.2.3", "1.2.4"}},
		{name: "comma", query: `SOPInstanceUID=1.2.3,1.2.4`, level: index.ImageLevel, key: tag.SOPInstanceUID, want: []string{"1.2.3", "1.2.4"}},
		{name: "repeated", query: `SOPInstanceUID=1.2.3&SOPInstanceUID=1.2.4`, level: index.ImageLevel, key: tag.SOPInstanceUID, want: []string{"1.2.3", "1.2.4"}},
		{name: "all three", query: `SOPInstanceUID=1.2.3%5C1.2.4&SOPInstanceUID=1.2.5,1.2.3`, level: index.ImageLevel, key: tag.SOPInstanceUID, want: []string{"1.2.3", "1.2.4", "1.2.5"}},
		{name: "tag number", query: `00080018=1.2.3&00080018=1.2.4`, level: index.ImageLevel, key: tag.SOPInstanceUID, want: []string{"1.2.3", "1.2.4"}},
		{name: "repeated identical", query: `PatientID=X&PatientID=X`, key: tag.PatientID, want: []string{"X"}},
		{name: "repeated different", query: `PatientID=X&PatientID=Y`, key: tag.PatientID, want: []string{"X", "Y"}},
		{name: "backslash in LO", query: `PatientID=X%5CY`, key: tag.PatientID, want: []string{"X", "Y"}},
		{name: "comma in LO is text", query: `StudyDescription=CT,+head`, key: tag.StudyDescription, want: []string{"CT, head"}},
		{name: "universal wins", query: `PatientID=X&PatientID=`, key: tag.PatientID, want: nil},
		{name: "star wins", query: `PatientID=*&PatientID=X`, key: tag.PatientID, want: nil},
		{name: "nested", query: `RequestAttributesSequence.RequestedProcedureID=A&RequestAttributesSequence.RequestedProcedureID=A`, key: tag.RequestAttributesSequence},
		{name: "limit repeated", query: `limit=5&limit=5`, key: tag.StudyInstanceUID},
		{name: "limit different", query: `limit=5&limit=6`, err: "more than once"},
		{name: "fuzzymatching different", query: `fuzzymatching=true&fuzzymatching=false`, err: "more than once"},
		{name: "accept is not a key", query: `accept=application/dicom%2Bjson&charset=utf-8`, key: tag.StudyInstanceUID},
		{name: "too many UIDs", query: "StudyInstanceUID=" + strings.Join(manyUIDs, ","), err: "more than 1000 values"},
		{name: "too many repeated UIDs", query: "StudyInstanceUID=" + strings.Join(manyUIDs, "&StudyInstanceUID="), err: "more than 1000 values"},
		{name: "duplicates do not count", query: "PatientID=" + strings.Repeat("X&PatientID=", 5000) + "X", key: tag.PatientID, want: []string{"X"}},
		{name: "too many fields", query: "includefield=" + strings.Join(manyFields, ","), err: "more than 512 attributes"},
		{name: "too many return keys", query: strings.Join(manyFields, "=&") + "=", err: "more than 512 attributes"},
		{name: "path and query agree", query: `StudyInstanceUID=1.2.3,1.2.4`, study: "1.2.4", level: index.SeriesLevel, key: tag.StudyInstanceUID, want: []string{"1.2.4"}},
		{name: "path and query differ", query: `StudyInstanceUID=1.2.3`, study: "1.2.4", level: index.SeriesLevel, noMatch: true},
		{name: "not a sequence", query: `PatientName.PatientID=X`, err: "not a sequence"},
		{name: "unknown", query: `NoSuchKeyword=1`, err: "not an attribute"},
	} {
		t.Run(c.name, func(t *testing.T) {
			params, err := url.ParseQuery(c.query)
			if err != nil {
				t.Fatal(err)
			}
			level := cmpOr(c.level, index.StudyLevel)
			q, err := parseSearch(params, level, c.study, "", Limits{})
			switch {
			case c.noMatch:
				if !errors.Is(err, errNoMatch) {
					t.Fatalf("err %v, want errNoMatch", err)
				}
				return
			case c.err != "":
				var e *Error
				if !errors.As(err, &e) || e.Status != 400 || !strings.Contains(e.Reason, c.err) {
					t.Fatalf("err %v, want a 400 saying %q", err, c.err)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			e, ok := q.Identifier.Find(c.key)
			if !ok {
				t.Fatalf("no element %s in %v", c.key, q.Identifier)
			}
			if e.VR != "SQ" && !slices.Equal(e.Values, c.want) {
				t.Errorf("values %q, want %q", e.Values, c.want)
			}
			if e.VR == "SQ" && (len(e.Items) != 1 || len(e.Items[0].Elements) != 1 || len(e.Items[0].Elements[0].Values) != 1) {
				t.Errorf("sequence key %+v, want one item of one key with one value", e)
			}
			if _, err := sqlindex.UnsupportedKeys(q); err != nil {
				t.Errorf("index refuses the query: %v", err)
			}
		})
	}
}

func cmpOr(l, def index.Level) index.Level {
	if l != 0 {
		return l
	}
	return def
}
