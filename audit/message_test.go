package audit

import (
	"encoding/xml"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/internal/testpeer"
)

var (
	t0      = time.Date(2026, 3, 1, 9, 30, 0, 123456000, time.UTC)
	pacsd   = Application("PACSD", "10.0.0.5")
	ct01    = Participant{UserID: "CT01", NetworkAccessPoint: "10.0.0.7:51234"}
	viewer  = Participant{UserID: "alice", UserName: "Alice <Admin> & co", NetworkAccessPoint: "ohif.rxh.nhs.uk"}
	patient = Patient{ID: "P-001", Issuer: "RXH", Name: "Doe^Jane"}
	study   = Study{UID: "1.2.826.0.1.3680043.2.1", Accession: "ACC1", SOPClasses: map[string]int{"1.2.840.10008.5.1.4.1.1.2": 3, "1.2.840.10008.5.1.4.1.1.4": 1},
		Instances: map[string][]string{"1.2.840.10008.5.1.4.1.1.4": {"1.2.3.4"}}}
)

// examples holds a message of every kind pacsd writes.
func examples() map[string]*Message {
	m := map[string]*Message{
		"application-start":  ApplicationActivity(t0, true, pacsd, Success),
		"begin-transferring": BeginTransferring(t0, pacsd, Participant{UserID: "STORESCP", NetworkAccessPoint: "127.0.0.1"}, patient, study),
		"store":              InstancesTransferred(t0, ActionCreate, Success, ct01, pacsd, patient, study),
		"retrieve":           InstancesTransferred(t0, ActionRead, MinorFailure, pacsd, viewer, patient, study),
		"accessed":           InstancesAccessed(t0, ActionUpdate, Success, viewer, patient, study),
		"deleted-instances":  InstancesDeleted(t0, false, Success, viewer, patient, study),
		"deleted-study":      InstancesDeleted(t0, true, Success, viewer, patient, study),
		"c-find":             Query(t0, Success, ct01, pacsd, "1.2.840.10008.5.1.4.1.2.2.1", []byte{0x10, 0x00, 0x20, 0x00, 0, 0, 0, 0}, "1.2.840.10008.1.2"),
		"qido":               Query(t0, Success, viewer, pacsd, "1.2.840.10008.5.1.4.1.2.2.1", []byte("/dicom-web/studies?PatientID=P-001"), ""),
		"login-failed":       UserAuthentication(t0, true, MinorFailure, Participant{UserID: "unknown", NetworkAccessPoint: "192.0.2.9"}, pacsd, "invalid or expired token"),
		"association-refused": SecurityAlert(t0, TypeNodeAuthentication, MinorFailure, pacsd, "calling AE CT09 not allowed",
			NodeObject("CT09@192.0.2.9")),
		"config-loaded": SecurityAlert(t0, TypeSecurityConfiguration, Success, pacsd, "", URIObject("file:///etc/pacsd/pacsd.json")),
	}
	m["store"].Site = "RXH"
	for name, msg := range trailExamples() {
		m["trail-"+name] = msg
	}
	return m
}

// trailExamples holds a message of every method of Trail.
func trailExamples() map[string]*Message {
	var last *Message
	tr := &Trail{Record: func(m *Message) { last = m }, App: pacsd, Now: func() time.Time { return t0 }}
	ct := Actor{User: "CT01", AETitle: "CT01", Addr: "10.0.0.7:51234"}
	alice := Actor{User: "alice", Addr: "192.0.2.10"}
	dest := Actor{AETitle: "STORESCP", Addr: "127.0.0.1:11113"}
	failed := errors.New("disk full")
	out := map[string]*Message{}
	for name, call := range map[string]func(){
		"started":      tr.Started,
		"stopped":      func() { tr.Stopped(failed) },
		"reloaded":     func() { tr.ConfigurationReloaded("TLS certificate", nil) },
		"accepted":     func() { tr.AssociationAccepted(ct, "PACSD") },
		"refused":      func() { tr.AssociationRefused(Actor{Addr: "192.0.2.9:4000"}, "TLS handshake: bad certificate") },
		"login-failed": func() { tr.LoginFailed(Actor{Addr: "192.0.2.9"}, "expired token") },
		"restricted":   func() { tr.Restricted(alice, "DELETE /dicom-web/studies/1 needs delete") },
		"stored":       func() { tr.Stored(ct, true, nil, patient, study) },
		"store-failed": func() { tr.Stored(ct, false, failed, patient, study) },
		"queried": func() {
			tr.Queried(ct, nil, "1.2.840.10008.5.1.4.1.2.2.1", []byte{0x10, 0, 0x20, 0, 0, 0, 0, 0}, "1.2.840.10008.1.2")
		},
		"sending":          func() { tr.Sending(ct, dest, patient, study) },
		"sent":             func() { tr.Sent(ct, dest, nil, patient, study) },
		"deleted":          func() { tr.Deleted(alice, true, nil, patient, study) },
		"deleted-instance": func() { tr.Deleted(alice, false, nil, patient, study) },
		"corrected":        func() { tr.Corrected(alice, nil, patient, study) },
	} {
		last = nil
		call()
		if last == nil {
			panic("Trail." + name + " recorded nothing")
		}
		out[name] = last
	}
	return out
}

// TestTrailNil checks that a nil Trail records nothing and does not
// panic, so that services built without one work.
func TestTrailNil(t *testing.T) {
	var tr *Trail
	tr.Started()
	tr.AssociationRefused(Actor{}, "x")
	tr.Stored(Actor{}, false, nil, patient, study)
	tr.Sent(Actor{}, Actor{}, nil, patient)
}

// TestMessagesValidate checks every kind of message against the schema of
// PS3.15 A.5.1 with xmllint.
func TestMessagesValidate(t *testing.T) {
	testpeer.Need(t, "xmllint")
	dir := t.TempDir()
	var files []string
	for name, m := range examples() {
		b, err := m.AppendXML([]byte(xml.Header))
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, name+".xml")
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	args := append([]string{"--noout", "--relaxng", filepath.Join("testdata", "audit-message.rng")}, files...)
	_, stderr, err := testpeer.Run(t.Context(), "xmllint", args...)
	if err != nil {
		t.Fatalf("xmllint: %v\n%s", err, stderr)
	}
	if n := strings.Count(stderr, " validates"); n != len(files) {
		t.Fatalf("%d of %d files validate:\n%s", n, len(files), stderr)
	}

	// The schema check must be able to fail.
	bad := filepath.Join(dir, "bad.xml")
	os.WriteFile(bad, []byte(`<AuditMessage><EventIdentification EventDateTime="x" EventOutcomeIndicator="0"/></AuditMessage>`), 0o600)
	if _, _, err := testpeer.Run(t.Context(), "xmllint", "--noout", "--relaxng", filepath.Join("testdata", "audit-message.rng"), bad); err == nil {
		t.Fatal("xmllint accepted an invalid message")
	}
}

// TestStoreMessage reads a store message back and checks its content.
func TestStoreMessage(t *testing.T) {
	b, err := examples()["store"].AppendXML(nil)
	if err != nil {
		t.Fatal(err)
	}
	var x xmlMessage
	if err := xml.Unmarshal(b, &x); err != nil {
		t.Fatal(err)
	}
	ev := x.Event
	if ev.ID.Code != "110104" || ev.ID.System != "DCM" || ev.Action != "C" || ev.Outcome != "0" || ev.Time != "2026-03-01T09:30:00.123456Z" {
		t.Errorf("event %+v", ev)
	}
	if len(x.Participants) != 2 {
		t.Fatalf("participants %+v", x.Participants)
	}
	src, dst := x.Participants[0], x.Participants[1]
	if src.UserID != "CT01" || src.NAP != "10.0.0.7" || src.NAPType != "2" || src.Roles[0].Code != "110153" {
		t.Errorf("source %+v", src)
	}
	if dst.UserID != "PACSD" || dst.AltUserID != "AETITLES=PACSD" || dst.Roles[0].Code != "110152" {
		t.Errorf("destination %+v", dst)
	}
	if x.Source.ID != "" || x.Source.Site != "RXH" {
		t.Errorf("source %+v", x.Source)
	}
	if len(x.Objects) != 2 {
		t.Fatalf("objects %+v", x.Objects)
	}
	st, pt := x.Objects[0], x.Objects[1]
	if st.ID != study.UID || st.IDType.Code != "110180" || st.Type != "2" || st.Role != "3" {
		t.Errorf("study %+v", st)
	}
	d := st.Description[0]
	if d.Accessions[0].Number != "ACC1" || len(d.SOPClasses) != 2 || d.SOPClasses[0].Count != 3 || d.SOPClasses[1].Instances[0].UID != "1.2.3.4" {
		t.Errorf("description %+v", d)
	}
	if pt.ID != "P-001^^^RXH" || pt.IDType.Code != "2" || pt.IDType.System != "RFC-3881" || *pt.Name != "Doe^Jane" || pt.Type != "1" || pt.Role != "1" {
		t.Errorf("patient %+v", pt)
	}
	// Text that looks like markup is escaped, not interpreted.
	b, _ = examples()["retrieve"].AppendXML(nil)
	if !strings.Contains(string(b), `UserName="Alice &lt;Admin&gt; &amp; co"`) {
		t.Errorf("user name not escaped: %s", b)
	}
}

func TestAccessPoint(t *testing.T) {
	for in, want := range map[string][2]string{
		"10.0.0.7:104":          {"10.0.0.7", "2"},
		"[::ffff:10.0.0.7]:104": {"10.0.0.7", "2"},
		"fe80::1":               {"fe80::1", "2"},
		"ct01.rxh.nhs.uk":       {"ct01.rxh.nhs.uk", "1"},
		"ct01.rxh.nhs.uk:104":   {"ct01.rxh.nhs.uk", "1"},
		"":                      {"", ""},
	} {
		id, typ := accessPoint(in)
		if id != want[0] || typ != want[1] {
			t.Errorf("accessPoint(%q) = %q, %q", in, id, typ)
		}
	}
}
