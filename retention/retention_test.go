package retention_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/sqlite"
	"github.com/pacsd/pacsd/retention"
)

func TestParsePeriod(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want retention.Period
	}{
		{"8y", retention.Period{Years: 8}},
		{"6m", retention.Period{Months: 6}},
		{"2w", retention.Period{Days: 14}},
		{"30d", retention.Period{Days: 30}},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := retention.ParsePeriod(tt.in)
			if err != nil || got != tt.want || got.String() == "" {
				t.Errorf("ParsePeriod(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
		})
	}
	for _, bad := range []string{"", "y", "8", "-1y", "0y", "8x", "1.5y"} {
		if _, err := retention.ParsePeriod(bad); err == nil {
			t.Errorf("ParsePeriod(%q) succeeded", bad)
		}
	}
}

func TestRuleCheck(t *testing.T) {
	for name, rule := range map[string]string{
		"neither":      `{"when": {"Modality": "MG"}}`,
		"both":         `{"keep": "8y", "keep_until_age": "25y"}`,
		"bad keyword":  `{"when": {"Modality2": "MG"}, "keep": "8y"}`,
		"bad from":     `{"keep": "8y", "from": "SeriesDate"}`,
		"age and from": `{"keep_until_age": "25y", "from": "StudyDate"}`,
		"bad age":      `{"when": {"age_at_study_under": "eighteen"}, "keep": "8y"}`,
	} {
		var r retention.Rule
		if json.Unmarshal([]byte(rule), &r) == nil && r.Check() == nil {
			t.Errorf("%s: rule %s accepted", name, rule)
		}
	}
}

// TestDue applies the two rules to studies in a real index, at
// a clock set in the test.
func TestDue(t *testing.T) {
	ctx := t.Context()
	db, err := sqlite.Open(ctx, sqlite.Memory)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	put := func(study, modality, studyDate, birth string) {
		t.Helper()
		h := &dicom.Dataset{Elements: []dicom.Element{
			{Tag: tag.StudyDate, VR: "DA", Values: []string{studyDate}},
			{Tag: tag.Modality, VR: "CS", Values: []string{modality}},
			{Tag: tag.PatientID, VR: "LO", Values: []string{"P" + study}},
			{Tag: tag.PatientBirthDate, VR: "DA", Values: []string{birth}},
		}}
		if _, err := db.Put(ctx, &index.PutRequest{Instance: &index.Instance{SOPInstanceUID: study + ".1.1", SeriesInstanceUID: study + ".1",
			StudyInstanceUID: study, SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", Key: study, SHA256: "00", Header: h}}); err != nil {
			t.Fatal(err)
		}
	}
	put("1.1", "MG", "20100101", "19600101") // a mammogram of 2010: due in 2018
	put("1.2", "MG", "20200101", "19600101") // due 2028
	put("1.3", "CT", "20000101", "19600101") // no rule covers it
	put("1.4", "CR", "20000101", "19950101") // child at the study: until 25, 2020
	put("1.5", "MG", "20050101", "19900101") // child mammogram: 8y (2013) and age 25 (2015)
	put("1.6", "MG", "", "19600101")         // no date: kept
	var rules []retention.Rule
	if err := json.Unmarshal([]byte(`[{"when": {"Modality": "MG"}, "keep": "8y", "from": "StudyDate"},
		{"when": {"age_at_study_under": "18y"}, "keep_until_age": "25y"}]`), &rules); err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if err := r.Check(); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		now  string
		want []string
	}{
		{"20140101", nil},                    // 1.5 is kept by the age rule
		{"20190101", []string{"1.1", "1.5"}}, // 1.4 is kept until 2020
		{"20300101", []string{"1.1", "1.2", "1.4", "1.5"}},
	} {
		t.Run(tt.now, func(t *testing.T) {
			now, _ := time.Parse("20060102", tt.now)
			due, err := retention.Due(ctx, db, rules, now)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range due {
				got = append(got, e.StudyInstanceUID)
				if e.Until.After(now) || e.Rule.String() == "" {
					t.Errorf("%s due until %v by %v", e.StudyInstanceUID, e.Until, e.Rule)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("due at %s: %v, want %v", tt.now, got, tt.want)
			}
		})
	}
	if due, _ := retention.Due(ctx, db, nil, time.Now()); len(due) != 0 {
		t.Errorf("without rules %d studies are due", len(due))
	}
}
