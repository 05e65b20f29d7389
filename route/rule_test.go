package route

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
)

func known(names ...string) func(string) bool {
	return func(s string) bool {
		for _, n := range names {
			if n == s {
				return true
			}
		}
		return false
	}
}

func header(kv ...string) *dicom.Dataset {
	ds := &dicom.Dataset{}
	for i := 0; i < len(kv); i += 2 {
		t, ok := tag.ByKeyword(kv[i])
		if !ok {
			panic(kv[i])
		}
		info, _ := tag.Lookup(t)
		ds.Elements = append(ds.Elements, dicom.Element{Tag: t, VR: info.VR, Values: strings.Split(kv[i+1], `\`)})
	}
	return ds
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec Spec
		want string
	}{
		{"no name", Spec{To: []string{"A"}}, "no name"},
		{"no destination", Spec{Name: "r"}, "no destination"},
		{"unknown destination", Spec{Name: "r", To: []string{"X"}}, `"X" is neither`},
		{"bad delay", Spec{Name: "r", To: []string{"A"}, Delay: "soon"}, "delay"},
		{"negative delay", Spec{Name: "r", To: []string{"A"}, Delay: "-1s"}, "negative"},
		{"bad window", Spec{Name: "r", To: []string{"A"}, Window: "19-7"}, "window"},
		{"bad priority", Spec{Name: "r", To: []string{"A"}, Priority: "urgent"}, "priority"},
		{"unknown fact", Spec{Name: "r", To: []string{"A"}, When: map[string]string{"Modalty": "CT"}}, `"Modalty" is not`},
		{"sequence", Spec{Name: "r", To: []string{"A"}, When: map[string]string{"ReferencedSeriesSequence": "x"}}, "no text value"},
		{"bad regexp", Spec{Name: "r", To: []string{"A"}, When: map[string]string{"Modality": "CT("}}, "when Modality"},
		{"unknown profile", Spec{Name: "r", To: []string{"A"}, Deidentify: "full"}, `deidentify "full"`},
		{"burned-in without de-identification", Spec{Name: "r", To: []string{"A"}, AllowBurnedIn: true}, "allow_burned_in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile([]Spec{tc.spec}, nil, known("A"), time.UTC)
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want ErrConfig saying %q", err, tc.want)
			}
		})
	}
	if _, err := Compile([]Spec{{Name: "r", To: []string{"A"}}, {Name: "r", To: []string{"A"}}}, nil, known("A"), nil); err == nil {
		t.Error("two routes of one name accepted")
	}
	if _, err := Compile(nil, []string{"B"}, known("A"), nil); err == nil {
		t.Error("an unknown --forward destination accepted")
	}
}

func TestMatch(t *testing.T) {
	specs := []Spec{
		{Name: "ct-to-reporting", When: map[string]string{"calling_ae": "^(CT01|CT02)$", "Modality": "CT|MR", "StudyDescription": "(?i)head"},
			To: []string{"REPORTING", "TRUSTB_WEB"}, Delay: "30s", Window: "19:00-07:00", Priority: "normal"},
		{Name: "stow-research", When: map[string]string{"source": "^stow$", "ImageType": `\\PRIMARY`}, To: []string{"RESEARCH"}, Priority: "low"},
		{Name: "urgent", When: map[string]string{"called_ae": "URGENT"}, To: []string{"REPORTING"}, Priority: "high"},
		{Name: "unnamed-patient", When: map[string]string{"PatientName": "^$"}, To: []string{"QA"}},
	}
	rs, err := Compile(specs, []string{"BACKUP"}, known("REPORTING", "TRUSTB_WEB", "RESEARCH", "QA", "BACKUP"), time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	evening := time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC)
	noon := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ct := header("Modality", "CT", "StudyDescription", "CT Head w/o", "PatientName", "DOE^J")
	for _, tc := range []struct {
		name  string
		facts Facts
		now   time.Time
		want  string // destination@due priority, ...
	}{
		{"all hold", Facts{CallingAE: "CT01", Source: "dimse", Header: ct}, evening,
			"REPORTING@20:00:30 normal [ct-to-reporting], TRUSTB_WEB@20:00:30 normal [ct-to-reporting], BACKUP@20:00:00 normal [forward BACKUP]"},
		{"outside the window", Facts{CallingAE: "CT02 ", Source: "dimse", Header: ct}, noon,
			"REPORTING@19:00:00 normal [ct-to-reporting], TRUSTB_WEB@19:00:00 normal [ct-to-reporting], BACKUP@12:00:00 normal [forward BACKUP]"},
		{"calling AE anchored", Facts{CallingAE: "CT012", Header: ct}, evening, "BACKUP@20:00:00 normal [forward BACKUP]"},
		{"modality", Facts{CallingAE: "CT01", Header: header("Modality", "US", "StudyDescription", "head", "PatientName", "X")}, evening, "BACKUP@20:00:00 normal [forward BACKUP]"},
		{"multi-valued", Facts{Source: "stow", Header: header("ImageType", `ORIGINAL\PRIMARY\AXIAL`, "PatientName", "X")}, noon,
			"RESEARCH@12:00:00 low [stow-research], BACKUP@12:00:00 normal [forward BACKUP]"},
		{"merged", Facts{CallingAE: "CT01", CalledAE: "URGENT", Header: ct}, evening,
			"REPORTING@20:00:00 high [ct-to-reporting urgent], TRUSTB_WEB@20:00:30 normal [ct-to-reporting], BACKUP@20:00:00 normal [forward BACKUP]"},
		{"absent attribute", Facts{Header: header("Modality", "CT")}, noon, "QA@12:00:00 normal [unnamed-patient], BACKUP@12:00:00 normal [forward BACKUP]"},
		{"no header", Facts{}, noon, "QA@12:00:00 normal [unnamed-patient], BACKUP@12:00:00 normal [forward BACKUP]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, tg := range rs.Match(&tc.facts, tc.now) {
				got = append(got, fmt.Sprintf("%s@%s %v %v", tg.Destination, tg.Due.Format("15:04:05"), tg.Priority, tg.Routes))
			}
			if s := strings.Join(got, ", "); s != tc.want {
				t.Errorf("got  %s\nwant %s", s, tc.want)
			}
		})
	}
}

func TestWindow(t *testing.T) {
	zone := time.FixedZone("X", 3600)
	at := func(h, m int) time.Time { return time.Date(2026, 3, 1, h, m, 0, 0, zone) }
	for _, tc := range []struct {
		window string
		t      time.Time
		in     bool
		next   time.Time
	}{
		{"19:00-07:00", at(20, 0), true, at(20, 0)},
		{"19:00-07:00", at(6, 59), true, at(6, 59)},
		{"19:00-07:00", at(7, 0), false, at(19, 0)},
		{"19:00-07:00", at(12, 0), false, at(19, 0)},
		{"08:00-17:30", at(7, 0), false, at(8, 0)},
		{"08:00-17:30", at(17, 30), false, at(8, 0).AddDate(0, 0, 1)},
		{"08:00-17:30", at(17, 29), true, at(17, 29)},
		{"22:00-24:00", at(23, 59), true, at(23, 59)},
		{"22:00-24:00", at(0, 0), false, at(22, 0)},
		{"", at(3, 0), true, at(3, 0)},
	} {
		w, err := ParseWindow(tc.window, zone)
		if err != nil {
			t.Fatal(err)
		}
		if got := w.Contains(tc.t); got != tc.in {
			t.Errorf("%s contains %s: %v", tc.window, tc.t.Format("15:04"), got)
		}
		if got := w.Next(tc.t); !got.Equal(tc.next) {
			t.Errorf("%s next after %s: %s, want %s", tc.window, tc.t, got, tc.next)
		}
		if w.String() != tc.window {
			t.Errorf("String %q, want %q", w.String(), tc.window)
		}
	}
	// The window is read in its zone, whatever the zone of the time.
	w, _ := ParseWindow("19:00-07:00", zone)
	if !w.Contains(time.Date(2026, 3, 1, 18, 30, 0, 0, time.UTC)) {
		t.Error("18:30 UTC is 19:30 in the window's zone")
	}
	for _, bad := range []string{"19:00", "7:00-7:00", "25:00-01:00", "19:60-20:00", "24:00-01:00", "a-b"} {
		if _, err := ParseWindow(bad, zone); err == nil {
			t.Errorf("window %q accepted", bad)
		}
	}
}

// TestDeidentify checks that a route's deidentify reaches its
// destinations, and that a destination is sent either de-identified
// copies or originals, by every route to it.
func TestDeidentify(t *testing.T) {
	rs, err := Compile([]Spec{
		{Name: "research", When: map[string]string{"Modality": "MR"}, To: []string{"RESEARCH"}, Deidentify: "basic"},
		{Name: "research-ct", When: map[string]string{"Modality": "CT"}, To: []string{"RESEARCH"}, Deidentify: "basic"},
		{Name: "reporting", To: []string{"REPORTING"}},
	}, nil, known("RESEARCH", "REPORTING"), time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dest, want string
	}{{"RESEARCH", "basic"}, {"REPORTING", ""}, {"ELSEWHERE", ""}} {
		if got, burned := rs.Deidentify(tc.dest); got != tc.want || burned {
			t.Errorf("Deidentify(%s) = %q, %v; want %q, false", tc.dest, got, burned, tc.want)
		}
	}
	for name, specs := range map[string][]Spec{
		"de-identified and not": {{Name: "a", To: []string{"R"}, Deidentify: "basic"}, {Name: "b", To: []string{"R"}}},
		"burned-in and not":     {{Name: "a", To: []string{"R"}, Deidentify: "basic"}, {Name: "b", To: []string{"R"}, Deidentify: "basic", AllowBurnedIn: true}},
	} {
		if _, err := Compile(specs, nil, known("R"), nil); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "destination of its own") {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
	if _, err := Compile([]Spec{{Name: "a", To: []string{"R"}, Deidentify: "basic"}}, []string{"R"}, known("R"), nil); !errors.Is(err, ErrConfig) {
		t.Errorf("a de-identifying route and --forward to one destination: %v, want ErrConfig", err)
	}
}
