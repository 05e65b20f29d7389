package sqlindex

import (
	"slices"
	"strings"
)

// table describes a table of the schema: the columns the code maintains
// itself and the attribute columns taken from headers.
type table struct {
	name  string
	fixed []string
	attrs []column
	// keys are key columns that no attribute fills, after the key
	// attributes.
	keys []string
}

func (t *table) columns() []string {
	return slices.Concat(t.fixed, t.keys, names(t.attrs, true))
}

// level is the table of one level of the information model above the
// instance. Its key columns are the attributes marked key; parent is the
// column that refers to the level above, empty for patients.
type level struct {
	table
	parent string

	// names are the attributes of the level of VR PN, whose name keys
	// are kept in the table keyTable, with the foreign key column keyFK.
	names           []column
	keyTable, keyFK string

	// Statements, written with ? parameters.
	find   string // pk, parent (0 for patients), attrs_received_at, names by key
	insert string // key, parent, attributes, attrs_received_at, updated_at; returns pk
	update string // parent, attributes, attrs_received_at, updated_at, by pk
}

func newLevel(t table, parent string) *level {
	lv := &level{table: t, parent: parent, keyTable: t.name + "_name_key", keyFK: t.name + "_fk"}
	var keys, where, nameCols []string
	for i := range t.attrs {
		if t.attrs[i].key {
			keys = append(keys, t.attrs[i].name)
			where = append(where, t.attrs[i].name+" = ?")
		}
		if t.attrs[i].kind == name {
			lv.names = append(lv.names, t.attrs[i])
			nameCols = append(nameCols, ", "+t.attrs[i].name)
		}
	}
	for _, k := range t.keys {
		keys = append(keys, k)
		where = append(where, k+" = ?")
	}
	attrs := names(t.attrs, false)
	parentExpr := "0"
	if parent != "" {
		parentExpr = parent
	}
	lv.find = "SELECT pk, " + parentExpr + ", attrs_received_at" + strings.Join(nameCols, "") + " FROM " + t.name + " WHERE " + strings.Join(where, " AND ")

	ins := slices.Concat(keys, optional(parent), attrs, []string{"attrs_received_at", "updated_at"})
	lv.insert = "INSERT INTO " + t.name + " (" + strings.Join(ins, ", ") + ") VALUES (" + params(len(ins)) + ") RETURNING pk"

	upd := slices.Concat(optional(parent), attrs, []string{"attrs_received_at", "updated_at"})
	lv.update = "UPDATE " + t.name + " SET " + strings.Join(upd, " = ?, ") + " = ? WHERE pk = ?"
	return lv
}

func optional(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

func params(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

var (
	patientTable = table{
		name: "patient",
		keys: []string{"unidentified_study"},
		fixed: []string{"pk",
			"number_of_patient_related_studies", "number_of_patient_related_series", "number_of_patient_related_instances",
			"attrs_received_at", "updated_at"},
		attrs: patientColumns,
	}
	studyTable = table{
		name: "study",
		fixed: []string{"pk", "patient_fk",
			"modalities_in_study", "sop_classes_in_study",
			"number_of_study_related_series", "number_of_study_related_instances",
			"attrs_received_at", "updated_at"},
		attrs: studyColumns,
	}
	seriesTable = table{
		name:  "series",
		fixed: []string{"pk", "study_fk", "number_of_series_related_instances", "attrs_received_at", "updated_at"},
		attrs: seriesColumns,
	}
	seriesSOPClassTable = table{
		name:  "series_sop_class",
		fixed: []string{"series_fk", "sop_class_uid", "number_of_instances"},
	}
	instanceTable = table{
		name:  "instance",
		fixed: append([]string{"pk", "amended", "amended_at"}, instanceRecord...),
		attrs: instanceColumns,
	}

	patientNameKeyTable = nameKeyTable(&patientTable)
	studyNameKeyTable   = nameKeyTable(&studyTable)
	seriesNameKeyTable  = nameKeyTable(&seriesTable)

	changeFeedTable = table{
		name:  "change_feed",
		fixed: []string{"seq", "kind", "study_instance_uid", "series_instance_uid", "sop_instance_uid", "changed_at"},
	}

	tables = []*table{&patientTable, &studyTable, &seriesTable, &seriesSOPClassTable, &instanceTable,
		&patientNameKeyTable, &studyNameKeyTable, &seriesNameKeyTable, &changeFeedTable}
)

// nameKeyTable describes the table that holds the name keys (see
// nameKeys) of the PN attributes of t's rows.
func nameKeyTable(t *table) table {
	return table{name: t.name + "_name_key", fixed: []string{t.name + "_fk", "tag", "part", "norm", "raw"}}
}

// instanceRecord are the columns of an instance row that hold the Instance
// itself rather than attributes of its header, in the order of
// recordValues.
var instanceRecord = []string{
	"series_fk", "sop_instance_uid", "sop_class_uid", "study_instance_uid", "series_instance_uid",
	"object_key", "size", "sha256", "transfer_syntax_uid",
	"calling_ae", "called_ae", "source", "principal", "received_at", "indexed_at",
}
