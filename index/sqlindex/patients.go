package sqlindex

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/nhs"
)

// Patients across issuers. A local patient is a row of patient, keyed by
// Patient ID and issuer; the person it is, by the same key, is a row of
// patient_person, which outlives the patient's rows. Patients that share
// a valid NHS number have the person "nhs:" and the number; patients
// linked by hand share whatever person their link chose; a patient
// unlinked by hand has the person "" and is nobody's but its own. A query
// by NHS number (see nhsCondition) finds every patient of its person.

// personNHS is the person of the patients linked by NHS number n.
func personNHS(n string) string { return "nhs:" + n }

// parseAmended reads an amendment as the index keeps it.
func parseAmended(doc string) (*dicom.Dataset, error) {
	if doc == "" {
		return nil, nil
	}
	ds, err := dicom.ParseJSON([]byte(doc))
	if err != nil {
		return nil, fmt.Errorf("amended attributes: %w", err)
	}
	return ds, nil
}

// formatAmended writes an amendment as the index keeps it.
func formatAmended(ds *dicom.Dataset) (string, error) {
	if ds == nil || len(ds.Elements) == 0 {
		return "", nil
	}
	b, err := ds.MarshalJSON()
	if err != nil {
		return "", fmt.Errorf("amended attributes: %w", err)
	}
	return string(b), nil
}

// putIdentity records what a put says of its instance's identity: the
// attributes served in place of the stored ones, and the NHS number
// that links its patient to others. It is a put step.
func (db *DB) putIdentity(ctx context.Context, tx *sql.Tx, w *putWrite) error {
	in := w.change.Instance
	if in.Amended != nil || w.previous != nil && w.previous.Amended != nil {
		doc, err := formatAmended(in.Amended)
		if err != nil {
			return err
		}
		if _, err := db.exec(ctx, tx, `UPDATE instance SET amended = ? WHERE pk = ?`, doc, w.instance); err != nil {
			return fmt.Errorf("amend instance: %w", err)
		}
	}
	if w.req.NHSNumber == "" {
		return nil
	}
	n, err := nhs.Normalize(w.req.NHSNumber)
	if err != nil {
		return err
	}
	h := index.Overlay(in.Header, in.Amended)
	id, issuer := cleanText(h.String(tag.PatientID)), cleanText(h.String(tag.IssuerOfPatientID))
	if id == "" {
		return nil
	}
	_, err = db.exec(ctx, tx, `INSERT INTO patient_person (patient_id, issuer, person, nhs_number, manual) VALUES (?, ?, ?, ?, 0)
ON CONFLICT (patient_id, issuer) DO UPDATE SET nhs_number = excluded.nhs_number,
	person = CASE WHEN patient_person.manual = 1 THEN patient_person.person ELSE excluded.person END
WHERE patient_person.nhs_number <> excluded.nhs_number`, id, issuer, personNHS(n), n)
	if err != nil {
		return fmt.Errorf("link patient %s^%s by NHS number: %w", id, issuer, err)
	}
	return nil
}

// Link links local patients by hand: they become one person, together
// with every patient already linked to any of them. Patients linked by
// hand stay linked whatever NHS numbers later instances carry. Patients
// that carry two different NHS numbers are refused (index.ErrLink): they are
// two people, or one of the numbers is wrong and must be corrected.
func (db *DB) Link(ctx context.Context, keys ...index.PatientKey) error {
	return db.LinkPatients(ctx, index.Link{Patients: keys})
}

func (db *DB) link(ctx context.Context, tx *sql.Tx, keys []index.PatientKey) error {
	var persons []string
	target := ""
	for _, k := range keys {
		p, err := db.personOf(ctx, tx, k)
		if err != nil {
			return err
		}
		if p == "" {
			continue
		}
		if strings.HasPrefix(p, "nhs:") {
			if strings.HasPrefix(target, "nhs:") && target != p {
				return fmt.Errorf("%w: %s and %s carry different NHS numbers", index.ErrLink, strings.TrimPrefix(target, "nhs:"), strings.TrimPrefix(p, "nhs:"))
			}
			target = p
		}
		if !slices.Contains(persons, p) {
			persons = append(persons, p)
		}
	}
	if target == "" && len(persons) > 0 {
		target = persons[0]
	}
	if target == "" {
		target = "link:" + keys[0].String()
	}
	for _, p := range persons {
		if _, err := db.exec(ctx, tx, `UPDATE patient_person SET person = ?, manual = 1 WHERE person = ?`, target, p); err != nil {
			return fmt.Errorf("link: %w", err)
		}
	}
	for _, k := range keys {
		if err := db.setPerson(ctx, tx, k, target); err != nil {
			return err
		}
	}
	return nil
}

// Unlink makes each patient nobody's but its own, whatever NHS number it
// carries, until it is linked by hand again.
func (db *DB) Unlink(ctx context.Context, keys ...index.PatientKey) error {
	return db.LinkPatients(ctx, index.Link{Patients: keys, Unlink: true})
}

func (db *DB) unlink(ctx context.Context, tx *sql.Tx, keys []index.PatientKey) error {
	for _, k := range keys {
		if err := db.setPerson(ctx, tx, k, ""); err != nil {
			return err
		}
	}
	return nil
}

func (db *DB) setPerson(ctx context.Context, tx *sql.Tx, k index.PatientKey, person string) error {
	_, err := db.exec(ctx, tx, `INSERT INTO patient_person (patient_id, issuer, person, manual) VALUES (?, ?, ?, 1)
ON CONFLICT (patient_id, issuer) DO UPDATE SET person = excluded.person, manual = 1`, k.ID, k.Issuer, person)
	if err != nil {
		return fmt.Errorf("link %s: %w", k, err)
	}
	return nil
}

// personOf returns the person of a patient: the one recorded, or, for a
// patient whose own ID is a valid NHS number of an NHS issuer, the
// person of that number; "" for a patient of its own.
func (db *DB) personOf(ctx context.Context, q querier, k index.PatientKey) (string, error) {
	var person string
	err := db.queryRow(ctx, q, `SELECT person FROM patient_person WHERE patient_id = ? AND issuer = ?`, k.ID, k.Issuer).Scan(&person)
	switch {
	case err == nil:
		return person, nil
	case !errors.Is(err, sql.ErrNoRows):
		return "", fmt.Errorf("person of %s: %w", k, err)
	}
	if db.nhsIssuers.Has(k.Issuer) {
		if n, err := nhs.Normalize(k.ID); err == nil {
			return personNHS(n), nil
		}
	}
	return "", nil
}

// Person returns the person a local patient is: every patient linked to
// it, each with its studies. It returns index.ErrNotFound when the index
// knows nothing of the patient.
func (db *DB) Person(ctx context.Context, k index.PatientKey) (*index.Person, error) {
	person, err := db.personOf(ctx, db.db, k)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	type member struct {
		index.PatientKey
		manual bool
		nhs    string
	}
	var members []member
	if person != "" {
		rows, err := db.query(ctx, db.db, `SELECT patient_id, issuer, manual, nhs_number FROM patient_person WHERE person = ? ORDER BY patient_id, issuer`, person)
		if err != nil {
			return nil, fmt.Errorf("index: person of %s: %w", k, err)
		}
		for rows.Next() {
			var m member
			var manual int
			if err := rows.Scan(&m.ID, &m.Issuer, &manual, &m.nhs); err != nil {
				rows.Close()
				return nil, fmt.Errorf("index: person of %s: %w", k, err)
			}
			m.manual = manual == 1
			members = append(members, m)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("index: person of %s: %w", k, err)
		}
	}
	if !slices.ContainsFunc(members, func(m member) bool { return m.PatientKey == k }) {
		members = append([]member{{PatientKey: k}}, members...)
	}
	out := &index.Person{}
	if n, ok := strings.CutPrefix(person, "nhs:"); ok {
		out.NHSNumber = n
	}
	found := false
	for _, m := range members {
		if out.NHSNumber == "" && m.nhs != "" && person != "" {
			out.NHSNumber = m.nhs
		}
		pp := &index.PersonPatient{PatientKey: m.PatientKey, Manual: m.manual}
		studies, err := db.patientStudies(ctx, m.PatientKey)
		if err != nil {
			return nil, err
		}
		pp.Studies = studies
		found = found || len(studies) > 0 || person != ""
		out.Patients = append(out.Patients, pp)
	}
	if !found {
		return nil, fmt.Errorf("index: patient %s: %w", k, index.ErrNotFound)
	}
	return out, nil
}

// patientStudies returns the studies of a local patient.
func (db *DB) patientStudies(ctx context.Context, k index.PatientKey) ([]*index.Study, error) {
	rows, err := db.query(ctx, db.db, `SELECT st.study_instance_uid FROM study st JOIN patient p ON p.pk = st.patient_fk
WHERE p.patient_id = ? AND p.issuer_of_patient_id = ? AND p.unidentified_study = '' ORDER BY st.pk`, k.ID, k.Issuer)
	if err != nil {
		return nil, fmt.Errorf("index: studies of %s: %w", k, err)
	}
	var uids []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			rows.Close()
			return nil, fmt.Errorf("index: studies of %s: %w", k, err)
		}
		uids = append(uids, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("index: studies of %s: %w", k, err)
	}
	var out []*index.Study
	for _, u := range uids {
		st, err := db.Study(ctx, u)
		if errors.Is(err, index.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// nhsCondition turns a query whose Patient ID is a valid NHS number and
// whose Issuer of Patient ID names the NHS into a match of every patient
// linked to that number, each keeping its own Patient ID and issuer in
// the results.
func (p *plan) nhsCondition(a *analysis, issuers nhs.Issuers) {
	var id, issuer *key
	for _, k := range a.keys {
		switch k.el.Tag {
		case tag.PatientID:
			id = k
		case tag.IssuerOfPatientID:
			issuer = k
		}
	}
	if id == nil || issuer == nil || len(id.values) != 1 || len(issuer.values) != 1 || !issuers.Has(issuer.values[0]) {
		return
	}
	n, err := nhs.Normalize(id.values[0])
	if err != nil {
		return
	}
	own := append([]string{issuer.values[0]}, issuers...)
	id.values, issuer.values = nil, nil
	p.where = append(p.where, "(p.pk IN (SELECT pp.pk FROM patient pp JOIN patient_person x ON x.patient_id = pp.patient_id AND x.issuer = pp.issuer_of_patient_id WHERE x.person = ? AND pp.unidentified_study = '')"+
		" OR p.patient_id = ? AND p.issuer_of_patient_id IN ("+params(len(own))+"))")
	p.args = append(p.args, personNHS(n), n)
	for _, s := range own {
		p.args = append(p.args, strings.TrimSpace(s))
	}
}
