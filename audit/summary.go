package audit

import (
	"encoding/xml"
	"fmt"
	"strings"
)

// Summary is what a record says in a list's few columns: the event, who
// acted and from where, and a detail.
type Summary struct {
	// Event is the display name of the Event ID, such as "DICOM
	// Instances Transferred".
	Event string
	// User is the participant who acted: the requestor other than the
	// audit source (pacsd itself), else the first other participant,
	// else the source.
	User string
	// AE is that participant's AE title, if it has one, and Address its
	// network access point.
	AE, Address string
	// Detail is the outcome's description, or else how many instances
	// the event concerned.
	Detail string
}

// xmlSummary is the part of a message Summary reads.
type xmlSummary struct {
	Event struct {
		ID struct {
			Display string `xml:"displayName,attr"`
			Meaning string `xml:"originalText,attr"`
		} `xml:"EventID"`
		Description string `xml:"EventOutcomeDescription"`
	} `xml:"EventIdentification"`
	Participants []struct {
		UserID    string `xml:"UserID,attr"`
		AltUserID string `xml:"AlternativeUserID,attr"`
		Requestor bool   `xml:"UserIsRequestor,attr"`
		NAP       string `xml:"NetworkAccessPointID,attr"`
	} `xml:"ActiveParticipant"`
	Objects []struct {
		Description []struct {
			SOPClasses []struct {
				Count int `xml:"NumberOfInstances,attr"`
			} `xml:"SOPClass"`
		} `xml:"ParticipantObjectDescription"`
	} `xml:"ParticipantObjectIdentification"`
}

// Summary reads the record's message for its Summary. source is the
// audit source ID of the journal (pacsd's AE title), which is who acted
// only when nobody else took part.
func (r Record) Summary(source string) (Summary, error) {
	var x xmlSummary
	if err := xml.Unmarshal([]byte(r.XML), &x); err != nil {
		return Summary{}, fmt.Errorf("audit: record %d: %w", r.Seq, err)
	}
	s := Summary{Event: x.Event.ID.Display, Detail: x.Event.Description}
	if s.Event == "" {
		s.Event = x.Event.ID.Meaning
	}
	who := -1
	for i, p := range x.Participants {
		if p.UserID == source {
			continue
		}
		if p.Requestor {
			who = i
			break
		}
		if who < 0 {
			who = i
		}
	}
	if who < 0 && len(x.Participants) > 0 {
		who = 0
	}
	if who >= 0 {
		p := x.Participants[who]
		s.User, s.Address = p.UserID, p.NAP
		if ae, ok := strings.CutPrefix(p.AltUserID, "AETITLES="); ok {
			s.AE, _, _ = strings.Cut(ae, ";")
		}
	}
	if s.Detail == "" {
		n := 0
		for _, o := range x.Objects {
			for _, d := range o.Description {
				for _, c := range d.SOPClasses {
					n += c.Count
				}
			}
		}
		switch {
		case n == 1:
			s.Detail = "1 instance"
		case n > 1:
			s.Detail = fmt.Sprintf("%d instances", n)
		}
	}
	return s, nil
}
