package audit

import (
	"testing"
)

func TestRecordSummary(t *testing.T) {
	msgs := trailExamples()
	for _, tc := range []struct {
		msg  string
		want Summary
	}{
		{"started", Summary{Event: "Application Activity", User: "PACSD", AE: "PACSD", Address: "10.0.0.5"}},
		{"accepted", Summary{Event: "Security Alert", User: "CT01", AE: "CT01", Address: "10.0.0.7", Detail: "association accepted, called AE PACSD"}},
		{"stored", Summary{Event: "DICOM Instances Transferred", User: "CT01", AE: "CT01", Address: "10.0.0.7", Detail: "4 instances"}},
		{"store-failed", Summary{Event: "DICOM Instances Transferred", User: "CT01", AE: "CT01", Address: "10.0.0.7", Detail: "disk full"}},
		{"sent", Summary{Event: "DICOM Instances Transferred", User: "CT01", AE: "CT01", Address: "10.0.0.7", Detail: "4 instances"}},
		{"login-failed", Summary{Event: "User Authentication", User: "unknown", Address: "192.0.2.9", Detail: "expired token"}},
		{"deleted", Summary{Event: "DICOM Study Deleted", User: "alice", Address: "192.0.2.10", Detail: "4 instances"}},
	} {
		t.Run(tc.msg, func(t *testing.T) {
			x, err := msgs[tc.msg].AppendXML(nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Record{Seq: 1, XML: string(x)}.Summary("PACSD")
			if err != nil || got != tc.want {
				t.Errorf("Summary = %+v, %v\nwant %+v", got, err, tc.want)
			}
		})
	}
	if _, err := (Record{Seq: 2, XML: "<AuditMessage"}).Summary("PACSD"); err == nil {
		t.Error("a broken message summarised")
	}
}
