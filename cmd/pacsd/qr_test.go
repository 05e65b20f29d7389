package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// The query/retrieve tests store a small archive with patients from two
// trusts and three character sets, then query and retrieve it with
// dcmtk's findscu, movescu and getscu, comparing every attribute they get
// back with what was stored.

type qrSeries struct {
	modality  string
	number    int
	instances int
	sps       string // Scheduled Procedure Step ID in the Request Attributes Sequence
}

type qrStudy struct {
	name    string // for the tests' own reference
	patient dcmgen.Patient
	charset string
	study   dcmgen.Study
	series  []qrSeries

	// Filled when written.
	uid       string
	seriesUID []string
	sops      [][]string
}

func qrCorpus() []*qrStudy {
	return []*qrStudy{
		{name: "A", patient: dcmgen.Patient{Name: "Doe^John", ID: "PID001", IssuerOfPatientID: "TRUST-A", BirthDate: "19700101", Sex: "M"},
			study:  dcmgen.Study{Date: "20240115", Time: "083000", AccessionNumber: "ACC001", StudyID: "S1", Description: "CT Chest", ReferringPhysicianName: "Smith^Referring"},
			series: []qrSeries{{"CT", 1, 3, "SPS-A1"}, {"CT", 2, 2, ""}}},
		{name: "B", patient: dcmgen.Patient{Name: "Doe^John", ID: "PID001", IssuerOfPatientID: "TRUST-B", BirthDate: "19800202", Sex: "M"},
			study:  dcmgen.Study{Date: "20240620", Time: "141500", AccessionNumber: "ACC002", StudyID: "S2", Description: "MR Brain"},
			series: []qrSeries{{"MR", 1, 2, ""}}},
		{name: "C", patient: dcmgen.Patient{Name: "Müller^Jürgen", ID: "PID002", BirthDate: "19650505", Sex: "M"}, charset: "ISO_IR 100",
			study:  dcmgen.Study{Date: "20251231", Time: "235959", AccessionNumber: "ACC003", StudyID: "S3", Description: "Röntgen Thorax"},
			series: []qrSeries{{"US", 1, 1, ""}, {"CT", 2, 1, ""}}},
		{name: "D", patient: dcmgen.Patient{Name: "Yamada^Tarou=山田^太郎=やまだ^たろう", ID: "PID003", BirthDate: "19900909", Sex: "M"}, charset: "ISO_IR 192",
			study:  dcmgen.Study{Date: "20230301", Time: "1015", AccessionNumber: "ACC004", StudyID: "S4", Description: "頭部CT"},
			series: []qrSeries{{"CT", 1, 2, ""}}},
	}
}

// writeCorpus writes the studies into dir and returns them with their UIDs.
func writeCorpus(t *testing.T, dir string) []*qrStudy {
	t.Helper()
	studies := qrCorpus()
	n := 0
	for _, st := range studies {
		st.uid = dcmgen.UID()
		for _, se := range st.series {
			suid := dcmgen.UID()
			st.seriesUID = append(st.seriesUID, suid)
			var sops []string
			for i := 1; i <= se.instances; i++ {
				in := &dcmgen.Instance{Patient: st.patient, SpecificCharacterSet: st.charset, InstanceNumber: i, Rows: 8, Columns: 8}
				in.Study = st.study
				in.Study.UID = st.uid
				in.Series = dcmgen.Series{UID: suid, Modality: se.modality, Number: se.number, Description: fmt.Sprintf("%s series %d", se.modality, se.number)}
				if se.sps != "" {
					in.Extra = append(in.Extra, dcmgen.Element{Tag: dcmgen.Tag(tag.RequestAttributesSequence), VR: "SQ", Value: []dcmgen.Item{{
						{Tag: dcmgen.Tag(tag.RequestedProcedureID), VR: "SH", Value: "RP-" + se.sps},
						{Tag: dcmgen.Tag(tag.ScheduledProcedureStepID), VR: "SH", Value: se.sps},
					}}})
				}
				n++
				f, err := dcmgen.Create(filepath.Join(dir, fmt.Sprintf("%03d.dcm", n)), in)
				if err != nil {
					t.Fatal(err)
				}
				sops = append(sops, f.SOPInstanceUID)
			}
			st.sops = append(st.sops, sops)
		}
	}
	return studies
}

func (st *qrStudy) instanceCount() int {
	n := 0
	for _, s := range st.sops {
		n += len(s)
	}
	return n
}

// findscu runs a C-FIND with dcmtk's findscu and returns each response's
// top-level values as dcmdump reads them.
func (p *instance) findscu(t *testing.T, model string, keys ...string) []map[uint32]string {
	t.Helper()
	dir := t.TempDir()
	args := []string{model, "-X", "-od", dir, "-aet", "DCMTK", "-aec", "PACSD"}
	for _, k := range keys {
		args = append(args, "-k", k)
	}
	args = append(args, p.host(), p.port())
	ctx := context.Background()
	if _, stderr, err := testpeer.Run(ctx, "findscu", args...); err != nil {
		t.Fatalf("findscu %v: %v\n%s", keys, err, stderr)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "rsp*.dcm"))
	sort.Strings(files)
	var out []map[uint32]string
	for _, f := range files {
		d, err := testpeer.Dump(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// values returns the value of tg in every response, sorted.
func values(rs []map[uint32]string, tg tag.Tag) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r[uint32(tg)])
	}
	sort.Strings(out)
	return out
}

// sorted returns a sorted copy: called as sorted(s...), it must not
// reorder s itself.
func sorted(v ...string) []string {
	v = slices.Clone(v)
	sort.Strings(v)
	return v
}

func TestFindscu(t *testing.T) {
	testpeer.Need(t, "findscu", "storescu")
	dir := t.TempDir()
	studies := writeCorpus(t, dir)
	byName := map[string]*qrStudy{}
	for _, s := range studies {
		byName[s.name] = s
	}
	A, B, C, D := byName["A"], byName["B"], byName["C"], byName["D"]
	p := startPacsd(t, t.TempDir())
	if out, err := p.dcmtk("storescu", "+sd", dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}

	study := func(keys ...string) []string {
		return append([]string{"QueryRetrieveLevel=STUDY", "StudyInstanceUID"}, keys...)
	}
	tests := []struct {
		name  string
		model string
		keys  []string
		want  []string // Study Instance UIDs, or the values of check
		check tag.Tag
	}{
		{"wildcard name", "-S", study("PatientName=Doe*"), sorted(A.uid, B.uid), tag.StudyInstanceUID},
		{"name ignores case", "-S", study("PatientName=doe^john"), sorted(A.uid, B.uid), tag.StudyInstanceUID},
		{"question mark", "-S", study("PatientName=?oe^Jo*"), sorted(A.uid, B.uid), tag.StudyInstanceUID},
		{"single value", "-S", study("PatientID=PID002"), []string{C.uid}, tag.StudyInstanceUID},
		{"issuer tells patients apart", "-S", study("PatientID=PID001", "IssuerOfPatientID=TRUST-B"), []string{B.uid}, tag.StudyInstanceUID},
		{"accession wildcard", "-S", study("AccessionNumber=ACC00?"), sorted(A.uid, B.uid, C.uid, D.uid), tag.StudyInstanceUID},
		{"date range", "-S", study("StudyDate=20240101-20241231"), sorted(A.uid, B.uid), tag.StudyInstanceUID},
		{"open date range before", "-S", study("StudyDate=-20231231"), []string{D.uid}, tag.StudyInstanceUID},
		{"open date range after", "-S", study("StudyDate=20250101-"), []string{C.uid}, tag.StudyInstanceUID},
		{"time range", "-S", study("StudyTime=080000-090000"), []string{A.uid}, tag.StudyInstanceUID},
		{"time range against a shorter time", "-S", study("StudyTime=100000-103000"), []string{D.uid}, tag.StudyInstanceUID},
		{"list of UIDs", "-S", study("StudyInstanceUID=" + A.uid + `\` + C.uid), sorted(A.uid, C.uid), tag.StudyInstanceUID},
		{"modalities in study", "-S", study("ModalitiesInStudy=MR"), []string{B.uid}, tag.StudyInstanceUID},
		{"modalities in study, any of two", "-S", study(`ModalitiesInStudy=US\MR`), sorted(B.uid, C.uid), tag.StudyInstanceUID},
		{"UTF-8 name", "-S", study("SpecificCharacterSet=ISO_IR 192", "PatientName=山田*"), []string{D.uid}, tag.StudyInstanceUID},
		{"alphabetic group of a UTF-8 name", "-S", study("PatientName=Yamada*"), []string{D.uid}, tag.StudyInstanceUID},
		{"UTF-8 query for a Latin-1 name", "-S", study("SpecificCharacterSet=ISO_IR 192", "PatientName=Mü*"), []string{C.uid}, tag.StudyInstanceUID},
		{"series of a study", "-S", []string{"QueryRetrieveLevel=SERIES", "StudyInstanceUID=" + A.uid, "SeriesInstanceUID", "Modality"}, sorted(A.seriesUID...), tag.SeriesInstanceUID},
		{"sequence matching", "-S", []string{"QueryRetrieveLevel=SERIES", "StudyInstanceUID=" + A.uid, "SeriesInstanceUID", "RequestAttributesSequence[0].ScheduledProcedureStepID=SPS-A1"}, []string{A.seriesUID[0]}, tag.SeriesInstanceUID},
		{"images of a series", "-S", []string{"QueryRetrieveLevel=IMAGE", "StudyInstanceUID=" + A.uid, "SeriesInstanceUID=" + A.seriesUID[0], "SOPInstanceUID"}, sorted(A.sops[0]...), tag.SOPInstanceUID},
		{"patient root, patient level", "-P", []string{"QueryRetrieveLevel=PATIENT", "PatientID=PID001", "IssuerOfPatientID"}, sorted("TRUST-A", "TRUST-B"), tag.IssuerOfPatientID},
		{"patient root, study level", "-P", []string{"QueryRetrieveLevel=STUDY", "PatientID=PID003", "StudyInstanceUID"}, []string{D.uid}, tag.StudyInstanceUID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := p.findscu(t, tt.model, tt.keys...)
			if got := values(rs, tt.check); !slices.Equal(got, tt.want) {
				t.Errorf("%v = %q, want %q", tt.check, got, tt.want)
			}
		})
	}

	t.Run("every return key of a study", func(t *testing.T) {
		rs := p.findscu(t, "-S", "QueryRetrieveLevel=STUDY", "StudyInstanceUID="+A.uid,
			"PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
			"StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyDescription", "ReferringPhysicianName",
			"ModalitiesInStudy", "SOPClassesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
			"NumberOfPatientRelatedStudies", "RetrieveAETitle", "InstanceAvailability", "InstitutionName")
		if len(rs) != 1 {
			t.Fatalf("%d matches", len(rs))
		}
		r := rs[0]
		want := map[tag.Tag]string{
			tag.PatientName: "Doe^John", tag.PatientID: "PID001", tag.IssuerOfPatientID: "TRUST-A", tag.PatientBirthDate: "19700101",
			tag.PatientSex: "M", tag.StudyDate: "20240115", tag.StudyTime: "083000", tag.AccessionNumber: "ACC001", tag.StudyID: "S1",
			tag.StudyDescription: "CT Chest", tag.ReferringPhysicianName: "Smith^Referring", tag.ModalitiesInStudy: "CT",
			tag.SOPClassesInStudy: dcmgen.CTImageStorage, tag.NumberOfStudyRelatedSeries: "2", tag.NumberOfStudyRelatedInstances: "5",
			tag.NumberOfPatientRelatedStudies: "1", tag.RetrieveAETitle: "PACSD", tag.InstanceAvailability: "ONLINE",
			tag.QueryRetrieveLevel: "STUDY", tag.StudyInstanceUID: A.uid,
			// The index keeps no Institution Name for this study: it
			// comes back empty, not invented.
			tag.InstitutionName: "",
		}
		for k, v := range want {
			if got, ok := r[uint32(k)]; !ok || got != v {
				t.Errorf("%v = %q (present %v), want %q", k, got, ok, v)
			}
		}
	})

	t.Run("non-ASCII names and text come back intact", func(t *testing.T) {
		rs := p.findscu(t, "-S", "QueryRetrieveLevel=STUDY", "PatientID=PID002", "PatientName", "StudyDescription", "SpecificCharacterSet")
		if len(rs) != 1 || rs[0][uint32(tag.PatientName)] != "Müller^Jürgen" || rs[0][uint32(tag.StudyDescription)] != "Röntgen Thorax" {
			t.Fatalf("responses %v", rs)
		}
		rs = p.findscu(t, "-S", "QueryRetrieveLevel=STUDY", "PatientID=PID003", "PatientName", "StudyDescription")
		if len(rs) != 1 || rs[0][uint32(tag.PatientName)] != "Yamada^Tarou=山田^太郎=やまだ^たろう" || rs[0][uint32(tag.StudyDescription)] != "頭部CT" {
			t.Fatalf("responses %v", rs)
		}
	})

	t.Run("series return keys", func(t *testing.T) {
		rs := p.findscu(t, "-S", "QueryRetrieveLevel=SERIES", "StudyInstanceUID="+A.uid, "SeriesInstanceUID", "Modality",
			"SeriesNumber", "SeriesDescription", "NumberOfSeriesRelatedInstances")
		got := map[string]string{}
		for _, r := range rs {
			got[r[uint32(tag.SeriesInstanceUID)]] = strings.Join([]string{r[uint32(tag.Modality)], r[uint32(tag.SeriesNumber)], r[uint32(tag.SeriesDescription)], r[uint32(tag.NumberOfSeriesRelatedInstances)]}, "|")
		}
		want := map[string]string{A.seriesUID[0]: "CT|1|CT series 1|3", A.seriesUID[1]: "CT|2|CT series 2|2"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("series %v, want %v", got, want)
		}
	})

	t.Run("image return keys", func(t *testing.T) {
		rs := p.findscu(t, "-S", "QueryRetrieveLevel=IMAGE", "StudyInstanceUID="+A.uid, "SeriesInstanceUID="+A.seriesUID[0],
			"SOPInstanceUID", "SOPClassUID", "InstanceNumber", "Rows", "Columns")
		if len(rs) != 3 {
			t.Fatalf("%d matches", len(rs))
		}
		for _, r := range rs {
			if r[uint32(tag.SOPClassUID)] != dcmgen.CTImageStorage || r[uint32(tag.Rows)] != "8" || r[uint32(tag.Columns)] != "8" || r[uint32(tag.InstanceNumber)] == "" {
				t.Errorf("image %v", r)
			}
		}
	})
}
