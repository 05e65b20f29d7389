package audit

import (
	"strings"
	"time"
)

// Application returns the participant for pacsd itself: its AE title as
// user ID, as PS3.15 A.5.2 suggests for processes that have one, and the
// host it runs on.
func Application(aeTitle, host string) Participant {
	return Participant{
		UserID:             aeTitle,
		AlternativeUserID:  "AETITLES=" + aeTitle,
		NetworkAccessPoint: host,
	}
}

// PatientObject describes a patient (participant object type 1, role 1,
// ID type Patient Number). The ID carries its issuer as an HL7 CX value.
func PatientObject(p Patient) Object {
	id := p.ID
	if p.Issuer != "" {
		id += "^^^" + p.Issuer
	}
	return Object{ID: id, IDType: idPatientNumber, Type: "1", Role: "1", Name: p.Name}
}

// StudyObject describes a study (type 2, role 3 Report, ID type Study
// Instance UID) with its SOP classes.
func StudyObject(s Study) Object {
	st := s
	return Object{ID: s.UID, IDType: idStudyUID, Type: "2", Role: "3", Study: &st}
}

// patientAndStudies returns the participant objects of a patient and
// studies; a patient without an ID is left out.
func patientAndStudies(p Patient, studies []Study) []Object {
	var out []Object
	for _, s := range studies {
		out = append(out, StudyObject(s))
	}
	if p.ID != "" {
		out = append(out, PatientObject(p))
	}
	return out
}

func withRole(p Participant, r Code) Participant {
	p.Roles = append(append([]Code(nil), p.Roles...), r)
	return p
}

// ApplicationActivity records pacsd starting or stopping (PS3.15
// A.5.3.1).
func ApplicationActivity(t time.Time, start bool, app Participant, outcome Outcome) *Message {
	typ := TypeApplicationStop
	if start {
		typ = TypeApplicationStart
	}
	return &Message{
		Time: t, Event: EventApplicationActivity, Types: []Code{typ}, Action: ActionExecute, Outcome: outcome,
		Participants: []Participant{withRole(app, RoleApplication)},
	}
}

// BeginTransferring records the start of sending instances to another
// node, by C-MOVE, C-GET, WADO-RS or a route (A.5.3.2).
func BeginTransferring(t time.Time, source, dest Participant, patient Patient, studies ...Study) *Message {
	return &Message{
		Time: t, Event: EventBeginTransferring, Action: ActionExecute, Outcome: Success,
		Participants: []Participant{withRole(source, RoleSource), withRole(dest, RoleDestination)},
		Objects:      patientAndStudies(patient, studies),
	}
}

// InstancesTransferred records instances sent or received (A.5.3.4): a
// store received is ActionCreate (ActionUpdate if it replaced an
// instance), instances sent are ActionRead.
func InstancesTransferred(t time.Time, action Action, outcome Outcome, source, dest Participant, patient Patient, studies ...Study) *Message {
	return &Message{
		Time: t, Event: EventInstancesTransferred, Action: action, Outcome: outcome,
		Participants: []Participant{withRole(source, RoleSource), withRole(dest, RoleDestination)},
		Objects:      patientAndStudies(patient, studies),
	}
}

// InstancesAccessed records instances read, created, corrected or
// deleted without a transfer (A.5.3.3), by the requestor user.
func InstancesAccessed(t time.Time, action Action, outcome Outcome, user Participant, patient Patient, studies ...Study) *Message {
	user.Requestor = true
	return &Message{
		Time: t, Event: EventInstancesAccessed, Action: action, Outcome: outcome,
		Participants: []Participant{user},
		Objects:      patientAndStudies(patient, studies),
	}
}

// InstancesDeleted records a deletion. Whole studies are DICOM Study
// Deleted (A.5.3.5); instances or series of a study that remains are
// DICOM Instances Accessed with the Delete action, as A.5.3.3 says.
func InstancesDeleted(t time.Time, wholeStudies bool, outcome Outcome, user Participant, patient Patient, studies ...Study) *Message {
	if !wholeStudies {
		return InstancesAccessed(t, ActionDelete, outcome, user, patient, studies...)
	}
	user.Requestor = true
	return &Message{
		Time: t, Event: EventStudyDeleted, Action: ActionDelete, Outcome: outcome,
		Participants: []Participant{user},
		Objects:      patientAndStudies(patient, studies),
	}
}

// Query records a query (A.5.3.11): C-FIND with the SOP class of its
// information model and its identifier's bytes, or QIDO-RS with its URL
// as the query. source asked, dest answered.
func Query(t time.Time, outcome Outcome, source, dest Participant, sopClass string, query []byte, transferSyntax string) *Message {
	source.Requestor = true
	if query == nil {
		query = []byte{}
	}
	o := Object{ID: sopClass, IDType: idSOPClassUID, Type: "2", Role: "24", Query: query}
	if transferSyntax != "" {
		o.Details = []Detail{{Type: "TransferSyntax", Value: []byte(transferSyntax)}}
	}
	return &Message{
		Time: t, Event: EventQuery, Action: ActionExecute, Outcome: outcome,
		Participants: []Participant{withRole(source, RoleSource), withRole(dest, RoleDestination)},
		Objects:      []Object{o},
	}
}

// UserAuthentication records a sign-in or sign-out, successful or not
// (A.5.3.12): user is who tried, node the service that checked.
func UserAuthentication(t time.Time, login bool, outcome Outcome, user, node Participant, why string) *Message {
	typ := TypeLogout
	if login {
		typ = TypeLogin
	}
	user.Requestor = true
	return &Message{
		Time: t, Event: EventUserAuthentication, Types: []Code{typ}, Action: ActionExecute, Outcome: outcome,
		Description:  why,
		Participants: []Participant{user, node},
	}
}

// SecurityAlert records a security event (A.5.3.10): an association
// refused (TypeNodeAuthentication), a configuration loaded
// (TypeSecurityConfiguration, TypeNetworkConfiguration), audit records
// lost (TypeAuditRecordingStopped). subject names what the alert is
// about: a node, a user or a file (see NodeObject, UserObject, URIObject).
func SecurityAlert(t time.Time, typ Code, outcome Outcome, reporter Participant, why string, subjects ...Object) *Message {
	reporter.Requestor = true
	return &Message{
		Time: t, Event: EventSecurityAlert, Types: []Code{typ}, Action: ActionExecute, Outcome: outcome,
		Description:  why,
		Participants: []Participant{reporter},
		Objects:      subjects,
	}
}

// NodeObject names a network node, such as a calling AE at an address,
// as the subject of an alert.
func NodeObject(node string) Object {
	return Object{ID: node, IDType: idNodeID, Type: "2", Role: "13", Name: node}
}

// UserObject names a user as the subject of an alert.
func UserObject(user string) Object {
	return Object{ID: user, IDType: idUserIdentifier, Type: "1", Role: "11", Name: user}
}

// URIObject names a file or URL, such as a configuration file, as the
// subject of an alert.
func URIObject(uri string) Object {
	return Object{ID: uri, IDType: idURI, Type: "2", Role: "13", Name: uri}
}

// patients, studies and users are what Query filters a record by.
func (m *Message) patients() []string {
	var out []string
	for _, o := range m.Objects {
		if o.IDType == idPatientNumber {
			id, _, _ := strings.Cut(o.ID, "^^^")
			out = append(out, id)
		}
	}
	return out
}

func (m *Message) studies() []string {
	var out []string
	for _, o := range m.Objects {
		if o.IDType == idStudyUID {
			out = append(out, o.ID)
		}
	}
	return out
}

func (m *Message) users() []string {
	var out []string
	for _, p := range m.Participants {
		if p.UserID != "" {
			out = append(out, p.UserID)
		}
	}
	return out
}
