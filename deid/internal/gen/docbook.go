package main

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
)

// The transcription is extracted from the standard's own text: the
// DocBook source of PS3.15 that NEMA publishes with each edition at
// https://dicom.nema.org/medical/dicom/EDITION/source/docbook/part15/part15.xml.
// Table E.1-1 there has fifteen columns: Attribute Name, Tag, Retired, In
// Standard Composite IOD, Basic Profile, and the ten option columns in
// the order of options.

// tableID is the xml:id of Table E.1-1 in the DocBook source.
const tableID = "table_E.1-1"

// privateTag is how the standard names the row of all private
// attributes.
const privateTag = "(gggg,eeee) where gggg is odd"

var docbookTagRE = regexp.MustCompile(`^\([0-9A-Fx]{4},[0-9A-Fx]{4}\)$`)

// extractDocBook reads Table E.1-1 from the DocBook source of PS3.15 and
// writes it to w as the transcription parse reads, sorted by tag, with a
// header naming edition, the edition it came from.
func extractDocBook(r io.Reader, w io.Writer, edition string) error {
	cells, err := tableCells(r)
	if err != nil {
		return err
	}
	type line struct {
		sortKey string
		text    string
	}
	var lines []line
	for i, c := range cells {
		if len(c) != 15 {
			return fmt.Errorf("%s row %d: %d cells, want 15", tableID, i+1, len(c))
		}
		name, tag, std, basic := c[0], c[1], c[3], c[4]
		key := strings.ReplaceAll(tag, "x", "0")
		switch {
		case tag == privateTag:
			tag, key = "(gggg,eeee)odd", "~" // last
		case !docbookTagRE.MatchString(tag):
			return fmt.Errorf("%s row %d (%s): tag %q", tableID, i+1, name, tag)
		}
		if std != "Y" && std != "N" {
			return fmt.Errorf("%s row %d (%s): In Std. Comp. IOD %q", tableID, i+1, name, std)
		}
		if !actions[basic] {
			return fmt.Errorf("%s row %d (%s): basic profile action %q", tableID, i+1, name, basic)
		}
		var opts []string
		for j, a := range c[5:] {
			if a == "" {
				continue
			}
			if !actions[a] {
				return fmt.Errorf("%s row %d (%s): %s action %q", tableID, i+1, name, options[j], a)
			}
			opts = append(opts, options[j]+"="+a)
		}
		optField := "-"
		if len(opts) > 0 {
			optField = strings.Join(opts, " ")
		}
		lines = append(lines, line{key + tag, strings.Join([]string{tag, basic, std, optField, name}, "\t")})
	}
	slices.SortFunc(lines, func(a, b line) int { return strings.Compare(a.sortKey, b.sortKey) })
	fmt.Fprintf(w, header, edition, edition)
	for _, l := range lines {
		if _, err := fmt.Fprintln(w, l.text); err != nil {
			return err
		}
	}
	return nil
}

const header = `# PS3.15 Table E.1-1, Application Level Confidentiality Profile
# Attributes, of the DICOM Standard edition %s: extracted from the
# standard's own text, the DocBook source NEMA publishes at
# https://dicom.nema.org/medical/dicom/%s/source/docbook/part15/part15.xml,
# by go run ./internal/gen -docbook part15.xml -edition EDITION (see
# docbook.go). Do not edit it by hand: extract it again from a newer
# edition. One attribute a line, fields separated by tabs, sorted by tag.
#
#   tag       (gggg,eeee) in hexadecimal; x stands for any hexadecimal digit
#             of a repeating group; "(gggg,eeee)odd" is the row of all
#             private attributes
#   basic     the action of the Basic Profile
#   std       Y if the attribute is in a standard composite IOD
#   options   NAME=ACTION for each option column that has an action, or -
#   name      the attribute's name as the table gives it
#
# Actions: D dummy value, Z zero length (or dummy), X remove, K keep,
# C clean, U replace UID; "X/Z" and the like choose by the attribute's
# type in its IOD (PS3.15 E.3.1), and "X/Z/U*" replaces the UIDs of the
# sequence's items.
`

// tableCells returns the text of each cell of each body row of Table
// E.1-1, white space collapsed and zero-width spaces (which the source
// puts in long names to let them break) dropped.
func tableCells(r io.Reader) ([][]string, error) {
	d := xml.NewDecoder(r)
	var (
		inTable, inBody bool
		depth           int // of elements within the table
		rows            [][]string
		cell            *strings.Builder
	)
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("DocBook: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if !inTable {
				if t.Name.Local == "table" && attr(t, "id") == tableID {
					inTable, depth = true, 0
				}
				continue
			}
			depth++
			switch t.Name.Local {
			case "tbody":
				inBody = true
			case "tr":
				if inBody {
					rows = append(rows, nil)
				}
			case "td":
				if inBody {
					cell = &strings.Builder{}
				}
			case "para":
				if cell != nil && cell.Len() > 0 {
					cell.WriteByte(' ')
				}
			}
		case xml.EndElement:
			if !inTable {
				continue
			}
			if depth == 0 { // the table ends
				if len(rows) == 0 {
					return nil, fmt.Errorf("DocBook: %s has no rows", tableID)
				}
				return rows, nil
			}
			depth--
			switch t.Name.Local {
			case "tbody":
				inBody = false
			case "td":
				if cell != nil {
					rows[len(rows)-1] = append(rows[len(rows)-1], cleanText(cell.String()))
					cell = nil
				}
			}
		case xml.CharData:
			if cell != nil {
				cell.Write(t)
			}
		}
	}
	return nil, fmt.Errorf("DocBook: no table %s", tableID)
}

func attr(e xml.StartElement, local string) string {
	for _, a := range e.Attr {
		if a.Name.Local == local {
			return a.Value
		}
	}
	return ""
}

// cleanText drops zero-width spaces and collapses white space.
func cleanText(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\u200b", "")), " ")
}
