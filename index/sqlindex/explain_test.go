package sqlindex_test

import (
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/postgres"
	"github.com/pacsd/pacsd/index/sqlite"
	"github.com/pacsd/pacsd/internal/testpeer"
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

// TestQueryPlansPostgres checks that PostgreSQL, given the statistics of
// a year of studies, answers a search by study date, and by study date
// and modality, from the indexes alone (migration 0013) before reading
// the rows of the batch.
func TestQueryPlansPostgres(t *testing.T) {
	pg := testpeer.StartPostgresT(t)
	url := pg.NewDatabaseT(t)
	db, err := postgres.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	raw, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, s := range []string{
		`INSERT INTO patient (patient_id, issuer_of_patient_id, attrs_received_at, updated_at)
		SELECT 'P' || g, '', 0, 0 FROM generate_series(1, 5000) g`,
		`INSERT INTO study (patient_fk, study_instance_uid, study_date, study_date_norm, modalities_in_study, attrs_received_at, updated_at)
		SELECT 1 + g % 5000, '1.9.' || g, d, d, 'CT', 0, 0
		FROM (SELECT g, to_char(date '2024-01-01' + (g * 7919) % 366, 'YYYYMMDD') AS d FROM generate_series(1, 20000) g) s`,
		`INSERT INTO series (study_fk, series_instance_uid, modality, attrs_received_at, updated_at)
		SELECT pk, study_instance_uid || '.1', CASE WHEN pk % 4 = 0 THEN 'MR' ELSE 'CT' END, 0, 0 FROM study`,
		`VACUUM ANALYZE`,
	} {
		if _, err := raw.ExecContext(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	el := func(tg tag.Tag, v string) dicom.Element {
		info, _ := tag.Lookup(tg)
		return dicom.Element{Tag: tg, VR: info.VR, Values: []string{v}}
	}
	for _, c := range []struct {
		name string
		keys []dicom.Element
		uses []string
	}{
		{"study date", []dicom.Element{el(tag.StudyDate, "20240315")},
			[]string{"Index Only Scan using study_study_date on study", "Index Scan using study_pkey on study st"}},
		{"study date and modality", []dicom.Element{el(tag.StudyDate, "20240315"), el(tag.ModalitiesInStudy, "MR")},
			[]string{"Index Only Scan using study_study_date on study", "Index Only Scan using series_study_fk on series x"}},
	} {
		q := &index.Query{Level: index.StudyLevel, Identifier: &dicom.Dataset{Elements: c.keys}, Limit: 26}
		plan, err := db.ExplainFind(t.Context(), q, false)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for _, u := range c.uses {
			if !strings.Contains(plan, u) {
				t.Errorf("%s: plan does not use %s:\n%s", c.name, u, plan)
			}
		}
		if strings.Contains(plan, "Seq Scan") {
			t.Errorf("%s: plan scans a table:\n%s", c.name, plan)
		}
	}
}
