package sqlindex

import (
	"cmp"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
)

// kind says how an attribute is kept in its column.
type kind uint8

const (
	// text keeps the values as DICOM encodes them, multiple values joined
	// by backslashes.
	text kind = iota
	// name keeps a PN value like text, plus its normalized form (see
	// normalizeName) in a second column named <name>_norm, so that
	// case-insensitive wildcard matching can use a plain index.
	name
	// sequence keeps a sequence as DICOM JSON (PS3.18 Annex F): an object
	// holding that one element, which dicom.ParseJSON reads back.
	sequence
	// number keeps the first value of an IS, US or UL attribute as an
	// integer, so that it sorts and compares as a number; NULL when the
	// attribute is absent or its value is not an integer.
	number
	// date, timeOfDay and dateTime keep a DA, TM or DT value like text,
	// plus its normalized form (see normDate, normTime, normDateTime) in
	// a second column named <name>_norm, so that values of different
	// precision, forms and offsets compare by the moment they stand for,
	// with a plain index.
	date
	timeOfDay
	dateTime
)

// column is an attribute of one level of the information model and the
// column that keeps it.
type column struct {
	name string
	tag  tag.Tag
	kind kind
	// in, when not zero, is a sequence whose items hold tag: the column
	// then keeps the values of tag found in every item, joined by
	// backslashes, so that a query can match an identifier nested in the
	// sequence without parsing JSON. The sequence itself has a column of
	// its own.
	in tag.Tag
	// key marks the attributes that identify the level; they are written
	// once, when the row is created, and never updated.
	key bool
}

// sqlNames returns the columns c writes.
func (c *column) sqlNames() []string {
	if c.normalized() {
		return []string{c.name, c.name + "_norm"}
	}
	return []string{c.name}
}

// normalized reports whether c has a second column with the normalized
// form of its value.
func (c *column) normalized() bool {
	switch c.kind {
	case name, date, timeOfDay, dateTime:
		return true
	}
	return false
}

// Attributes of each level: every attribute that C-FIND (PS3.4 C.6.1.1
// and C.6.2.1, patient and study root) and QIDO-RS (PS3.18 §10.6) match on
// or return, at the level it belongs to. The migrations create exactly
// these columns, which New checks.
var (
	patientColumns = []column{
		{name: "patient_id", tag: tag.PatientID, key: true},
		{name: "issuer_of_patient_id", tag: tag.IssuerOfPatientID, key: true},
		{name: "patient_name", tag: tag.PatientName, kind: name},
		{name: "issuer_of_patient_id_qualifiers_sequence", tag: tag.IssuerOfPatientIDQualifiersSequence, kind: sequence},
		{name: "issuer_of_patient_id_universal_entity_id", tag: tag.UniversalEntityID, in: tag.IssuerOfPatientIDQualifiersSequence},
		{name: "referenced_patient_sequence", tag: tag.ReferencedPatientSequence, kind: sequence},
		{name: "patient_birth_date", tag: tag.PatientBirthDate, kind: date},
		{name: "patient_birth_time", tag: tag.PatientBirthTime, kind: timeOfDay},
		{name: "patient_sex", tag: tag.PatientSex},
		// Other Patient IDs is retired from the key tables in favour of
		// the sequence, but equipment still sends it and older query
		// clients still ask for it.
		{name: "other_patient_ids", tag: tag.OtherPatientIDs},
		{name: "other_patient_ids_sequence", tag: tag.OtherPatientIDsSequence, kind: sequence},
		{name: "other_patient_names", tag: tag.OtherPatientNames, kind: name},
		{name: "ethnic_group", tag: tag.EthnicGroup},
		{name: "patient_comments", tag: tag.PatientComments},
		// The veterinary attributes of the patient level.
		{name: "patient_species_description", tag: tag.PatientSpeciesDescription},
		{name: "patient_species_code_sequence", tag: tag.PatientSpeciesCodeSequence, kind: sequence},
		{name: "patient_breed_description", tag: tag.PatientBreedDescription},
		{name: "patient_breed_code_sequence", tag: tag.PatientBreedCodeSequence, kind: sequence},
		{name: "breed_registration_sequence", tag: tag.BreedRegistrationSequence, kind: sequence},
		{name: "responsible_person", tag: tag.ResponsiblePerson, kind: name},
		{name: "responsible_person_role", tag: tag.ResponsiblePersonRole},
		{name: "responsible_organization", tag: tag.ResponsibleOrganization},
	}

	studyColumns = []column{
		{name: "study_instance_uid", tag: tag.StudyInstanceUID, key: true},
		{name: "study_date", tag: tag.StudyDate, kind: date},
		{name: "study_time", tag: tag.StudyTime, kind: timeOfDay},
		{name: "accession_number", tag: tag.AccessionNumber},
		{name: "issuer_of_accession_number_sequence", tag: tag.IssuerOfAccessionNumberSequence, kind: sequence},
		{name: "issuer_of_accession_number_local_namespace_entity_id", tag: tag.LocalNamespaceEntityID, in: tag.IssuerOfAccessionNumberSequence},
		{name: "study_id", tag: tag.StudyID},
		{name: "referring_physician_name", tag: tag.ReferringPhysicianName, kind: name},
		{name: "study_description", tag: tag.StudyDescription},
		{name: "procedure_code_sequence", tag: tag.ProcedureCodeSequence, kind: sequence},
		{name: "procedure_code_value", tag: tag.CodeValue, in: tag.ProcedureCodeSequence},
		{name: "name_of_physicians_reading_study", tag: tag.NameOfPhysiciansReadingStudy, kind: name},
		{name: "admitting_diagnoses_description", tag: tag.AdmittingDiagnosesDescription},
		{name: "referenced_study_sequence", tag: tag.ReferencedStudySequence, kind: sequence},
		{name: "patient_age", tag: tag.PatientAge},
		{name: "patient_size", tag: tag.PatientSize},
		{name: "patient_weight", tag: tag.PatientWeight},
		{name: "occupation", tag: tag.Occupation},
		{name: "additional_patient_history", tag: tag.AdditionalPatientHistory},
		{name: "timezone_offset_from_utc", tag: tag.TimezoneOffsetFromUTC},
	}

	seriesColumns = []column{
		{name: "series_instance_uid", tag: tag.SeriesInstanceUID, key: true},
		{name: "modality", tag: tag.Modality},
		{name: "series_number", tag: tag.SeriesNumber, kind: number},
		{name: "series_description", tag: tag.SeriesDescription},
		{name: "series_date", tag: tag.SeriesDate, kind: date},
		{name: "series_time", tag: tag.SeriesTime, kind: timeOfDay},
		{name: "body_part_examined", tag: tag.BodyPartExamined},
		{name: "laterality", tag: tag.Laterality},
		{name: "performed_procedure_step_start_date", tag: tag.PerformedProcedureStepStartDate, kind: date},
		{name: "performed_procedure_step_start_time", tag: tag.PerformedProcedureStepStartTime, kind: timeOfDay},
		{name: "performed_procedure_step_id", tag: tag.PerformedProcedureStepID},
		{name: "performed_procedure_step_description", tag: tag.PerformedProcedureStepDescription},
		{name: "request_attributes_sequence", tag: tag.RequestAttributesSequence, kind: sequence},
		{name: "scheduled_procedure_step_id", tag: tag.ScheduledProcedureStepID, in: tag.RequestAttributesSequence},
		{name: "requested_procedure_id", tag: tag.RequestedProcedureID, in: tag.RequestAttributesSequence},
		{name: "institution_name", tag: tag.InstitutionName},
		{name: "institutional_department_name", tag: tag.InstitutionalDepartmentName},
		{name: "station_name", tag: tag.StationName},
		{name: "performing_physician_name", tag: tag.PerformingPhysicianName, kind: name},
		{name: "operators_name", tag: tag.OperatorsName, kind: name},
		{name: "manufacturer", tag: tag.Manufacturer},
		{name: "manufacturer_model_name", tag: tag.ManufacturerModelName},
		{name: "protocol_name", tag: tag.ProtocolName},
		{name: "timezone_offset_from_utc", tag: tag.TimezoneOffsetFromUTC},
	}

	// The instance level's identifying UIDs come from the Instance, not
	// from its header, and are kept with the storage facts.
	instanceColumns = []column{
		{name: "instance_number", tag: tag.InstanceNumber, kind: number},
		{name: "content_date", tag: tag.ContentDate, kind: date},
		{name: "content_time", tag: tag.ContentTime, kind: timeOfDay},
		{name: "acquisition_date_time", tag: tag.AcquisitionDateTime, kind: dateTime},
		{name: "rows", tag: tag.Rows, kind: number},
		{name: "columns", tag: tag.Columns, kind: number},
		{name: "bits_allocated", tag: tag.BitsAllocated, kind: number},
		{name: "number_of_frames", tag: tag.NumberOfFrames, kind: number},
		{name: "photometric_interpretation", tag: tag.PhotometricInterpretation},
		{name: "image_type", tag: tag.ImageType},
		{name: "content_label", tag: tag.ContentLabel},
		{name: "content_description", tag: tag.ContentDescription},
		// Structured reports.
		{name: "completion_flag", tag: tag.CompletionFlag},
		{name: "verification_flag", tag: tag.VerificationFlag},
		{name: "concept_name_code_sequence", tag: tag.ConceptNameCodeSequence, kind: sequence},
		{name: "concept_name_code_value", tag: tag.CodeValue, in: tag.ConceptNameCodeSequence},
		{name: "content_template_sequence", tag: tag.ContentTemplateSequence, kind: sequence},
		{name: "observation_date_time", tag: tag.ObservationDateTime, kind: dateTime},
		{name: "timezone_offset_from_utc", tag: tag.TimezoneOffsetFromUTC},
	}
)

// values returns the values of cols taken from h, in the order of their
// sqlNames. Key columns are left out when withKeys is false. A nil or
// partial header yields empty values for whatever it lacks.
func values(cols []column, h *dicom.Dataset, withKeys bool) ([]any, error) {
	out := make([]any, 0, len(cols)+4)
	for i := range cols {
		c := &cols[i]
		if c.key && !withKeys {
			continue
		}
		switch {
		case c.in != 0:
			var vs []string
			for _, it := range h.Items(c.in) {
				for _, v := range it.Strings(c.tag) {
					if v != "" {
						vs = append(vs, v)
					}
				}
			}
			out = append(out, strings.Join(vs, `\`))
		case c.kind == text:
			out = append(out, h.String(c.tag))
		case c.kind == name:
			v := h.String(c.tag)
			out = append(out, v, normalizeName(v))
		case c.kind == date, c.kind == timeOfDay, c.kind == dateTime:
			// These VRs hold one value; a multi-valued one is kept, but
			// only its first value is matched.
			v := h.String(c.tag)
			out = append(out, v, normalize(vr(c.tag), h.First(c.tag), h.String(tag.TimezoneOffsetFromUTC)))
		case c.kind == sequence:
			e, ok := h.Find(c.tag)
			if !ok {
				out = append(out, "")
				continue
			}
			b, err := (&dicom.Dataset{Elements: []dicom.Element{*e}}).MarshalJSON()
			if err != nil {
				return nil, fmt.Errorf("encode %s as JSON: %w", c.tag, err)
			}
			out = append(out, string(b))
		case c.kind == number:
			var n sql.Null[int64]
			if v, err := strconv.ParseInt(strings.TrimSpace(h.First(c.tag)), 10, 64); err == nil {
				n = sql.Null[int64]{V: v, Valid: true}
			}
			out = append(out, n)
		}
	}
	return out, nil
}

// names returns the SQL names of cols, key columns only when withKeys.
func names(cols []column, withKeys bool) []string {
	var out []string
	for i := range cols {
		if cols[i].key && !withKeys {
			continue
		}
		out = append(out, cols[i].sqlNames()...)
	}
	return out
}

// scanned holds one row's worth of attribute columns as read back.
type scanned struct {
	cols []column
	text []sql.NullString
	num  []sql.Null[int64]
	dest []any
}

func newScanned(cols []column) *scanned {
	s := &scanned{cols: cols}
	for i := range cols {
		for range cols[i].sqlNames() {
			if cols[i].kind == number {
				s.num = append(s.num, sql.Null[int64]{})
			} else {
				s.text = append(s.text, sql.NullString{})
			}
		}
	}
	t, n := 0, 0
	for i := range cols {
		for range cols[i].sqlNames() {
			if cols[i].kind == number {
				s.dest = append(s.dest, &s.num[n])
				n++
			} else {
				s.dest = append(s.dest, &s.text[t])
				t++
			}
		}
	}
	return s
}

// dataset rebuilds the attributes that were stored, as elements in tag
// order, and the normalized and flattened values that queries match
// against, by tag.
func (s *scanned) dataset() (*dicom.Dataset, map[tag.Tag]string, error) {
	ds := &dicom.Dataset{}
	search := map[tag.Tag]string{}
	t, n := 0, 0
	for i := range s.cols {
		c := &s.cols[i]
		switch c.kind {
		case number:
			v := s.num[n]
			n++
			if v.Valid {
				ds.Elements = append(ds.Elements, dicom.Element{Tag: c.tag, VR: vr(c.tag), Values: []string{strconv.FormatInt(v.V, 10)}})
			}
			continue
		case name:
			if v := s.text[t+1].String; v != "" {
				search[c.tag] = v
			}
		}
		v := s.text[t].String
		t += len(c.sqlNames())
		switch {
		case v == "":
		case c.in != 0:
			search[c.tag] = v
		case c.kind == sequence:
			sub, err := dicom.ParseJSON([]byte(v))
			if err != nil {
				return nil, nil, fmt.Errorf("column %s: %w", c.name, err)
			}
			ds.Elements = append(ds.Elements, sub.Elements...)
		default:
			e := dicom.Element{Tag: c.tag, VR: vr(c.tag)}
			switch e.VR {
			case "LT", "ST", "UT", "UR":
				// These VRs hold one value, in which a backslash is an
				// ordinary character.
				e.Values = []string{v}
			default:
				e.Values = strings.Split(v, `\`)
			}
			ds.Elements = append(ds.Elements, e)
		}
	}
	slices.SortStableFunc(ds.Elements, func(a, b dicom.Element) int {
		return cmp.Compare(a.Tag, b.Tag)
	})
	return ds, search, nil
}

func vr(t tag.Tag) string {
	if i, ok := tag.Lookup(t); ok {
		return i.VR
	}
	return "UN"
}

// normalizeName returns the form of a PN value that matching compares
// against: every component group with its trailing empty components and
// the spaces around components removed, trailing empty groups dropped,
// and the whole upper-cased by Unicode's simple case mapping. Queries must
// normalize their values the same way. Letters without case (Japanese
// kanji and kana) are unchanged.
func normalizeName(v string) string {
	return strings.ToUpper(tidyName(v))
}
