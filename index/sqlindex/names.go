package sqlindex

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
)

// A PN attribute is matched through its name keys, kept in a table of
// each level (patient_name_key, ...) rather than in the row: a value has
// up to three component groups (alphabetic, ideographic, phonetic), an
// attribute may have several values, and a key matches a name when it
// matches any of them (see nameCondition). One key row per value, group
// and word lets an index answer each of those questions, which no column
// of the row could.
//
// Each key is kept as received, components trimmed (raw), for
// case-sensitive matching, and upper-cased (norm) for the rest.

// The parts of a name a key holds.
const (
	// partValue is a whole value of more than one component group; a
	// value of one group is kept as that group only.
	partValue = 0
	// partAlphabetic, partIdeographic and partPhonetic are component
	// groups, numbered as they come.
	partAlphabetic  = 1
	partIdeographic = 2
	partPhonetic    = 3
	// partWord is a word of a component: components split at spaces,
	// for fuzzy matching.
	partWord = 4
)

type nameKey struct {
	tag  tag.Tag
	part int
	raw  string
}

// nameKeys returns the keys of the PN attribute t with the value v, all
// values joined by backslashes.
func nameKeys(t tag.Tag, v string) []nameKey {
	var out []nameKey
	add := func(part int, raw string) {
		for _, k := range out {
			if k.part == part && k.raw == raw {
				return
			}
		}
		out = append(out, nameKey{tag: t, part: part, raw: raw})
	}
	for _, val := range strings.Split(tidyName(v), `\`) {
		if val == "" {
			continue
		}
		groups := strings.Split(val, "=")
		if len(groups) > 1 {
			add(partValue, val)
		}
		for i, g := range groups {
			if g == "" {
				continue
			}
			add(partAlphabetic+i, g)
			for _, c := range strings.Split(g, "^") {
				for _, w := range strings.Fields(c) {
					add(partWord, w)
				}
			}
		}
	}
	return out
}

// tidyName returns v with the spaces around each component and trailing
// empty components and groups removed, as normalizeName does, its case
// kept.
func tidyName(v string) string {
	if v == "" {
		return ""
	}
	vals := strings.Split(v, `\`)
	for i, val := range vals {
		groups := strings.Split(val, "=")
		for j, g := range groups {
			comps := strings.Split(g, "^")
			for k := range comps {
				comps[k] = strings.TrimSpace(comps[k])
			}
			for len(comps) > 0 && comps[len(comps)-1] == "" {
				comps = comps[:len(comps)-1]
			}
			groups[j] = strings.Join(comps, "^")
		}
		for len(groups) > 0 && groups[len(groups)-1] == "" {
			groups = groups[:len(groups)-1]
		}
		vals[i] = strings.Join(groups, "=")
	}
	return strings.Join(vals, `\`)
}

// nameValues returns the values of the PN attributes of lv in h, in the
// order of lv.names.
func nameValues(lv *level, h *dicom.Dataset) []string {
	out := make([]string, len(lv.names))
	for i := range lv.names {
		out[i] = cleanText(h.String(lv.names[i].tag))
	}
	return out
}

// writeNames replaces the name keys of the row pk of lv with those of
// the PN values given, in the order of lv.names.
func (db *DB) writeNames(ctx context.Context, tx *sql.Tx, lv *level, pk int64, values []string, replace bool) error {
	if replace {
		if _, err := db.exec(ctx, tx, `DELETE FROM `+lv.keyTable+` WHERE `+lv.keyFK+` = ?`, pk); err != nil {
			return fmt.Errorf("delete name keys of %s %d: %w", lv.name, pk, err)
		}
	}
	insert := `INSERT INTO ` + lv.keyTable + ` (` + lv.keyFK + `, tag, part, norm, raw) VALUES (?, ?, ?, ?, ?)`
	for i := range lv.names {
		for _, k := range nameKeys(lv.names[i].tag, values[i]) {
			if _, err := db.exec(ctx, tx, insert, pk, int64(k.tag), k.part, strings.ToUpper(k.raw), k.raw); err != nil {
				return fmt.Errorf("insert name key of %s %d: %w", lv.name, pk, err)
			}
		}
	}
	return nil
}
