package conformance

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
)

var update = flag.Bool("update", false, "rewrite docs/conformance-statement.md from the code")

const statementFile = "../docs/conformance-statement.md"

// TestStatementUpToDate fails when the statement in docs/ no longer says
// what the code does: a SOP class, transfer syntax, status or matching
// key added or removed without regenerating it. Run
// `go test ./conformance -update` to regenerate it.
func TestStatementUpToDate(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, "md", Defaults()); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(statementFile, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	old, err := os.ReadFile(statementFile)
	if err != nil {
		t.Fatalf("%v; run go test ./conformance -update", err)
	}
	if !bytes.Equal(old, buf.Bytes()) {
		t.Errorf("%s is out of date with the code; run `go test ./conformance -update` and commit it\n%s",
			statementFile, firstDiff(string(old), buf.String()))
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range max(len(al), len(bl)) {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("first difference at line %d:\n- %s\n+ %s", i+1, x, y)
		}
	}
	return ""
}

// The statement follows the sections of PS3.2 Annex A, in order.
func TestTemplateSections(t *testing.T) {
	doc := statement(Defaults())
	var got []string
	for _, s := range doc.sections {
		if s.level <= 2 {
			got = append(got, s.heading())
		}
	}
	want := []string{
		"Conformance statement overview",
		"1 Introduction", "1.1 Revision history", "1.2 Audience and remarks", "1.3 Definitions and references",
		"2 Networking", "2.1 Implementation model", "2.2 AE specifications", "2.3 Network interfaces", "2.4 Configuration", "2.5 Web services",
		"3 Media interchange",
		"4 Support of extended character sets",
		"5 Security",
		"6 Annexes", "6.1 IOD contents", "6.2 Data dictionary of private attributes", "6.3 Coded terminology and templates",
		"6.4 Grayscale image consistency", "6.5 Standard extended, specialized and private SOP classes", "6.6 Private transfer syntaxes",
		"6.7 Storage SOP classes", "6.8 Transfer syntaxes of storage", "6.9 Codecs",
	}
	if !slices.Equal(got, want) {
		t.Errorf("sections\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// What the statement says of storage is what the server accepts: every
// class of uid.StorageClasses, every syntax of uid.StorageSyntaxes.
func TestStatementStatesTheTables(t *testing.T) {
	var buf bytes.Buffer
	f := Defaults()
	if err := Write(&buf, "md", f); err != nil {
		t.Fatal(err)
	}
	md := buf.String()
	for _, u := range uid.StorageClasses() {
		if !strings.Contains(md, "| "+u+" |") {
			t.Errorf("storage SOP class %s (%s) is not in the statement", u, uid.Name(u))
		}
	}
	for _, u := range uid.StorageSyntaxes() {
		if !strings.Contains(md, "| "+u+" |") {
			t.Errorf("transfer syntax %s (%s) is not in the statement", u, uid.Name(u))
		}
	}
	for _, s := range f.Services {
		for _, st := range s.Statuses {
			if !strings.Contains(md, statusCode(st.Code)) {
				t.Errorf("%s status %s is not in the statement", s.Name, statusCode(st.Code))
			}
		}
	}
	for _, k := range f.Keys {
		if !strings.Contains(md, k.Tag.String()) {
			t.Errorf("matching key %s is not in the statement", k.Tag)
		}
	}
}

// MatchingKeys asks the index; these keys are required or optional keys
// of PS3.4 C.6 that pacsd documents as matched, and the numbers of
// related entities are return keys only.
func TestMatchingKeys(t *testing.T) {
	keys := MatchingKeys()
	find := func(level string, in, t tag.Tag) *Key {
		for i := range keys {
			if keys[i].Level == level && keys[i].In == in && keys[i].Tag == t {
				return &keys[i]
			}
		}
		return nil
	}
	for _, c := range []struct {
		level string
		in, t tag.Tag
		kind  string
	}{
		{"PATIENT", 0, tag.PatientName, "wild card"},
		{"PATIENT", 0, tag.PatientID, "wild card"},
		{"PATIENT", 0, tag.PatientBirthDate, "range"},
		{"PATIENT", tag.IssuerOfPatientIDQualifiersSequence, tag.UniversalEntityID, "single value"},
		{"STUDY", 0, tag.StudyInstanceUID, "list of UIDs"},
		{"STUDY", 0, tag.StudyDate, "range"},
		{"STUDY", 0, tag.AccessionNumber, "wild card"},
		{"STUDY", 0, tag.ModalitiesInStudy, "wild card"},
		{"STUDY", tag.ProcedureCodeSequence, tag.CodeValue, "single value"},
		{"SERIES", 0, tag.Modality, "wild card"},
		{"SERIES", 0, tag.SeriesInstanceUID, "list of UIDs"},
		{"SERIES", tag.RequestAttributesSequence, tag.ScheduledProcedureStepID, "single value"},
		{"IMAGE", 0, tag.SOPInstanceUID, "list of UIDs"},
		{"IMAGE", 0, tag.InstanceNumber, "single value"},
		{"IMAGE", tag.ConceptNameCodeSequence, tag.CodeValue, "single value"},
	} {
		k := find(c.level, c.in, c.t)
		if k == nil {
			t.Errorf("%s: no key %v > %v", c.level, c.in, c.t)
			continue
		}
		if !slices.Contains(k.Matching, c.kind) {
			t.Errorf("%s %v: matching %v, want it to include %s", c.level, c.t, k.Matching, c.kind)
		}
	}
	for _, rt := range []tag.Tag{tag.NumberOfStudyRelatedInstances, tag.NumberOfSeriesRelatedInstances, tag.PixelData, tag.SpecificCharacterSet} {
		for _, k := range keys {
			if k.Tag == rt && k.In == 0 {
				t.Errorf("%v is listed as a matching key at %s", rt, k.Level)
			}
		}
	}
	// Each key is listed once, at the highest level that takes it.
	seen := map[[2]tag.Tag]string{}
	for _, k := range keys {
		id := [2]tag.Tag{k.In, k.Tag}
		if l, dup := seen[id]; dup {
			t.Errorf("key %v listed at %s and %s", k.Tag, l, k.Level)
		}
		seen[id] = k.Level
	}
}

func TestCharacterSets(t *testing.T) {
	got := map[string]CharacterSet{}
	for _, c := range characterSets() {
		got[c.Term] = c
	}
	for term, encoded := range map[string]bool{"ISO_IR 100": true, "ISO_IR 192": true, "ISO 2022 IR 87": false} {
		if c, ok := got[term]; !ok || !c.Decoded || c.Encoded != encoded {
			t.Errorf("%s: %+v, want read and written=%v", term, c, encoded)
		}
	}
}

// The HTML page is well formed, self-contained, and its tables have
// header cells.
func TestHTML(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, "html", Defaults()); err != nil {
		t.Fatal(err)
	}
	z := html.NewTokenizer(bytes.NewReader(buf.Bytes()))
	var stack []string
	voids := map[string]bool{"meta": true, "br": true}
	tables, headed := 0, 0
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			if z.Err() != io.EOF {
				t.Fatal(z.Err())
			}
			break
		}
		name, hasAttr := z.TagName()
		switch tt {
		case html.StartTagToken:
			n := string(name)
			for hasAttr {
				var k, v []byte
				k, v, hasAttr = z.TagAttr()
				if (string(k) == "src" || string(k) == "href") && !strings.HasPrefix(string(v), "#") {
					t.Errorf("<%s %s=%q> refers to another document", n, k, v)
				}
			}
			if n == "script" || n == "link" || n == "img" {
				t.Errorf("<%s> in a page that must need nothing else", n)
			}
			if n == "table" {
				tables++
			}
			if n == "th" {
				headed++
			}
			if !voids[n] {
				stack = append(stack, n)
			}
		case html.EndTagToken:
			n := string(name)
			if len(stack) == 0 || stack[len(stack)-1] != n {
				t.Fatalf("</%s> closes %v", n, stack)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) != 0 {
		t.Errorf("unclosed elements %v", stack)
	}
	if tables < 10 || headed < 2*tables {
		t.Errorf("%d tables with %d header cells", tables, headed)
	}
}

func TestUnknownFormat(t *testing.T) {
	if err := Write(io.Discard, "pdf", Defaults()); !errors.Is(err, ErrFormat) {
		t.Errorf("Write(pdf) = %v, want ErrFormat", err)
	}
}

func TestMarkdownEscaping(t *testing.T) {
	for in, want := range map[string]string{
		"wild card (`*`, `?`)": "wild card (`*`, `?`)",
		"max_matches * 2":      `max\_matches \* 2`,
		"a <b> [c]":            `a \<b\> \[c\]`,
	} {
		if got := mdText(in); got != want {
			t.Errorf("mdText(%q) = %q, want %q", in, got, want)
		}
	}
}
