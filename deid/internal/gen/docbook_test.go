package main

import (
	"bytes"
	"strings"
	"testing"
)

// tr returns a DocBook table row of cells, as the PS3.15 source writes
// them: each value in a para, empty cells as <td/>.
func tr(cells ...string) string {
	var b strings.Builder
	b.WriteString("<tr valign=\"top\">")
	for _, c := range cells {
		if c == "" {
			b.WriteString("<td/>")
			continue
		}
		b.WriteString("<td align=\"center\"><para xml:id=\"p\">" + c + "</para></td>")
	}
	b.WriteString("</tr>\n")
	return b.String()
}

func doc(rows ...string) string {
	head := tr("Attribute Name", "Tag", "Retd.", "In Std. Comp. IOD", "Basic Prof.", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j")
	return `<?xml version="1.0"?><book xmlns="http://docbook.org/ns/docbook" xmlns:xml="http://www.w3.org/XML/1998/namespace">
<table xml:id="table_E.1-0"><tbody>` + tr("Decoy", "(0008,0050)", "N", "Y", "X", "", "", "", "", "", "", "", "", "", "") + `</tbody></table>
<table frame="box" label="E.1-1" xml:id="table_E.1-1"><caption>Application Level Confidentiality Profile Attributes</caption>
<thead>` + head + `</thead><tbody>` + strings.Join(rows, "") + `</tbody></table>
<table xml:id="table_E.1-1a"><tbody>` + tr("After", "(0010,0010)", "N", "Y", "K", "", "", "", "", "", "", "", "", "", "") + `</tbody></table></book>`
}

func TestExtractDocBook(t *testing.T) {
	src := doc(
		tr("Private Attributes", "(gggg,eeee) where\n gggg is odd", "N", "N", "X", "C", "", "", "", "", "", "", "", "", ""),
		tr("Patient ID", "(0010,0020)", "N", "Y", "Z/D", "", "", "", "", "", "", "", "", "", ""),
		tr("GPS Measure \u200bMode", "(0016,007A)", "N", "Y", "X", "", "", "K", "", "", "", "", "", "", ""),
		tr("Curve Data", "(50xx,xxxx)", "Y", "N", "X", "", "", "", "", "", "", "", "", "", "C"),
		tr("Accession Number", "(0008,0050)", "N", "Y", "Z", "", "", "", "", "", "", "", "", "", ""),
		tr("Study Date", "(0008,0020)", "N", "Y", "Z", "", "", "", "", "", "K", "C", "", "", ""),
	)
	var out bytes.Buffer
	if err := extractDocBook(strings.NewReader(src), &out, "2025e"); err != nil {
		t.Fatal(err)
	}
	var body []string
	for l := range strings.SplitSeq(strings.TrimSpace(out.String()), "\n") {
		if !strings.HasPrefix(l, "#") {
			body = append(body, l)
		}
	}
	want := []string{
		"(0008,0020)\tZ\tY\tFullDates=K ModifiedDates=C\tStudy Date",
		"(0008,0050)\tZ\tY\t-\tAccession Number",
		"(0010,0020)\tZ/D\tY\t-\tPatient ID",
		"(0016,007A)\tX\tY\tDeviceIdentity=K\tGPS Measure Mode",
		"(50xx,xxxx)\tX\tN\tCleanGraphics=C\tCurve Data",
		"(gggg,eeee)odd\tX\tN\tSafePrivate=C\tPrivate Attributes",
	}
	if strings.Join(body, "\n") != strings.Join(want, "\n") {
		t.Errorf("extracted:\n%s\nwant:\n%s", strings.Join(body, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(out.String(), "edition 2025e") || !strings.Contains(out.String(), "/2025e/source/docbook/part15/part15.xml") {
		t.Errorf("the header does not name the edition:\n%s", out.String())
	}
	// What was extracted is what the generator reads.
	rows, err := parse(&out)
	if err != nil || len(rows) != 6 {
		t.Fatalf("parse: %d rows, %v", len(rows), err)
	}
	if _, err := generate(rows); err != nil {
		t.Fatal(err)
	}

	for name, bad := range map[string]string{
		"no table":       `<book xmlns="http://docbook.org/ns/docbook"><para>x</para></book>`,
		"short row":      doc(tr("Patient ID", "(0010,0020)", "N", "Y", "Z")),
		"unknown action": doc(tr("Patient ID", "(0010,0020)", "N", "Y", "Q", "", "", "", "", "", "", "", "", "", "")),
		"bad tag":        doc(tr("Patient ID", "0010,0020", "N", "Y", "Z", "", "", "", "", "", "", "", "", "", "")),
	} {
		if err := extractDocBook(strings.NewReader(bad), &bytes.Buffer{}, "x"); err == nil {
			t.Errorf("%s: extracted without an error", name)
		}
	}
}
