package sqlindex_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/sqlite"
)

// TestQueryPlans checks that SQLite answers the common queries from an
// index: the plan of each must use the index named, and scan no table.
func TestQueryPlans(t *testing.T) {
	db, err := sqlite.Open(t.Context(), sqlite.Memory)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	el := func(tg tag.Tag, v string) dicom.Element {
		info, _ := tag.Lookup(tg)
		return dicom.Element{Tag: tg, VR: info.VR, Values: []string{v}}
	}
	for i := range 50 {
		_, err := db.Put(t.Context(), &index.PutRequest{Instance: &index.Instance{
			SOPInstanceUID: fmt.Sprintf("1.%d.1.1", i), SeriesInstanceUID: fmt.Sprintf("1.%d.1", i), StudyInstanceUID: fmt.Sprintf("1.%d", i),
			SOPClassUID: "1.2", ReceivedAt: time.Now(), Header: &dicom.Dataset{Elements: []dicom.Element{
				el(tag.PatientID, fmt.Sprint(i)), el(tag.PatientName, fmt.Sprintf("N%d^G", i)), el(tag.Modality, "CT")}},
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name     string
		level    index.Level
		keys     []dicom.Element
		retrieve bool
		uses     []string
	}{
		{"patient name prefix", index.StudyLevel, []dicom.Element{el(tag.PatientName, "A*")}, false,
			[]string{"patient_name_key_norm (tag=? AND norm>? AND norm<?)", "study_patient_fk"}},
		{"patient name", index.StudyLevel, []dicom.Element{el(tag.PatientName, "Doe^Jane")}, false,
			[]string{"patient_name_key_norm (tag=? AND norm=?)", "study_patient_fk"}},
		{"patient ID", index.StudyLevel, []dicom.Element{el(tag.PatientID, "12")}, false,
			[]string{"sqlite_autoindex_patient_1 (patient_id=?)", "study_patient_fk"}},
		{"accession number", index.StudyLevel, []dicom.Element{el(tag.AccessionNumber, "12")}, false,
			[]string{"study_accession_number (accession_number=?"}},
		// The pks of a range of dates come from the index alone, and only
		// the rows of the batch are read: not every match, sorted whole.
		{"study date range", index.StudyLevel, []dicom.Element{el(tag.StudyDate, "20240101-20240301")}, false,
			[]string{"COVERING INDEX study_study_date (study_date_norm>? AND study_date_norm<?)", "SEARCH st USING INTEGER PRIMARY KEY (rowid=?)"}},
		{"study date", index.StudyLevel, []dicom.Element{el(tag.StudyDate, "20240301")}, false,
			[]string{"COVERING INDEX study_study_date (study_date_norm=?)", "SEARCH st USING INTEGER PRIMARY KEY (rowid=?)"}},
		{"study date range and modality", index.StudyLevel, []dicom.Element{el(tag.StudyDate, "20240101-20240301"), el(tag.ModalitiesInStudy, "CT")}, false,
			[]string{"COVERING INDEX study_study_date (study_date_norm>? AND study_date_norm<?)", "COVERING INDEX series_study_fk (study_fk=? AND modality=?)",
				"SEARCH st USING INTEGER PRIMARY KEY (rowid=?)"}},
		{"study UID", index.StudyLevel, []dicom.Element{el(tag.StudyInstanceUID, "1.2")}, false,
			[]string{"sqlite_autoindex_study_1 (study_instance_uid=?"}},
		{"modality", index.SeriesLevel, []dicom.Element{el(tag.Modality, "CT")}, false,
			[]string{"series_modality (modality=?"}},
		{"series of a study", index.SeriesLevel, []dicom.Element{el(tag.StudyInstanceUID, "1.2")}, false,
			[]string{"sqlite_autoindex_study_1 (study_instance_uid=?)", "series_study_fk (study_fk=?"}},
		{"instances of a series", index.ImageLevel, []dicom.Element{el(tag.StudyInstanceUID, "1.2"), el(tag.SeriesInstanceUID, "1.2.1")}, false,
			[]string{"sqlite_autoindex_series_1 (series_instance_uid=?)", "instance_series_fk (series_fk=?"}},
		{"retrieve a study", index.StudyLevel, []dicom.Element{el(tag.StudyInstanceUID, "1.2")}, true,
			[]string{"sqlite_autoindex_study_1 (study_instance_uid=?)", "series_study_fk (study_fk=?)", "instance_series_fk (series_fk=?"}},
		{"modalities in study", index.StudyLevel, []dicom.Element{el(tag.ModalitiesInStudy, "CT")}, false,
			[]string{"COVERING INDEX series_study_fk (study_fk=? AND modality=?)"}},
	} {
		q := &index.Query{Level: c.level, Identifier: &dicom.Dataset{Elements: c.keys}}
		plan, err := db.ExplainFind(t.Context(), q, c.retrieve)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for _, u := range c.uses {
			if !strings.Contains(plan, u) {
				t.Errorf("%s: plan does not use %s:\n%s", c.name, u, plan)
			}
		}
		if strings.Contains(plan, "SCAN ") {
			t.Errorf("%s: plan scans a table:\n%s", c.name, plan)
		}
	}
}
