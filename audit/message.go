package audit

import (
	"encoding/base64"
	"encoding/xml"
	"net/netip"
	"sort"
	"strings"
	"time"
)

// Code is a coded value: a code, its coding scheme and its meaning.
type Code struct {
	Code    string
	System  string // codeSystemName: "DCM", "RFC-3881", an OID
	Meaning string
}

// Codes of PS3.16 (DCM) and RFC 3881 that the messages use.
var (
	// Event IDs (PS3.15 A.5.3).
	EventApplicationActivity  = Code{"110100", "DCM", "Application Activity"}
	EventBeginTransferring    = Code{"110102", "DCM", "Begin Transferring DICOM Instances"}
	EventInstancesAccessed    = Code{"110103", "DCM", "DICOM Instances Accessed"}
	EventInstancesTransferred = Code{"110104", "DCM", "DICOM Instances Transferred"}
	EventStudyDeleted         = Code{"110105", "DCM", "DICOM Study Deleted"}
	EventQuery                = Code{"110112", "DCM", "Query"}
	EventSecurityAlert        = Code{"110113", "DCM", "Security Alert"}
	EventUserAuthentication   = Code{"110114", "DCM", "User Authentication"}

	// Event type codes.
	TypeApplicationStart        = Code{"110120", "DCM", "Application Start"}
	TypeApplicationStop         = Code{"110121", "DCM", "Application Stop"}
	TypeLogin                   = Code{"110122", "DCM", "Login"}
	TypeLogout                  = Code{"110123", "DCM", "Logout"}
	TypeNodeAuthentication      = Code{"110126", "DCM", "Node Authentication"}
	TypeNetworkConfiguration    = Code{"110128", "DCM", "Network Configuration"}
	TypeSecurityConfiguration   = Code{"110129", "DCM", "Security Configuration"}
	TypeUseOfRestrictedFunction = Code{"110132", "DCM", "Use of Restricted Function"}
	TypeAuditRecordingStopped   = Code{"110133", "DCM", "Audit Recording Stopped"}
	TypeAuditRecordingStarted   = Code{"110134", "DCM", "Audit Recording Started"}

	// Active participant role ID codes.
	RoleApplication         = Code{"110150", "DCM", "Application"}
	RoleApplicationLauncher = Code{"110151", "DCM", "Application Launcher"}
	RoleDestination         = Code{"110152", "DCM", "Destination Role ID"}
	RoleSource              = Code{"110153", "DCM", "Source Role ID"}

	// Participant object ID type codes.
	idPatientNumber  = Code{"2", "RFC-3881", "Patient Number"}
	idStudyUID       = Code{"110180", "DCM", "Study Instance UID"}
	idSOPClassUID    = Code{"110181", "DCM", "SOP Class UID"}
	idNodeID         = Code{"110182", "DCM", "Node ID"}
	idUserIdentifier = Code{"11", "RFC-3881", "User Identifier"}
	idURI            = Code{"12", "RFC-3881", "URI"}
)

// Action is what an event did to its objects (EventActionCode).
type Action string

const (
	ActionCreate  Action = "C"
	ActionRead    Action = "R"
	ActionUpdate  Action = "U"
	ActionDelete  Action = "D"
	ActionExecute Action = "E"
)

// Outcome is an event's outcome (EventOutcomeIndicator).
type Outcome string

const (
	Success        Outcome = "0"
	MinorFailure   Outcome = "4" // the request failed; the system is fine
	SeriousFailure Outcome = "8"
	MajorFailure   Outcome = "12" // the reporting application is unavailable
)

// Participant is an active participant: a user, a process or a node
// taking part in an event.
type Participant struct {
	// UserID identifies the participant: an AE title, a token's
	// subject, a process ID.
	UserID string
	// AlternativeUserID, e.g. "AETITLES=PACSD" for an application.
	AlternativeUserID string
	UserName          string
	Requestor         bool
	// NetworkAccessPoint is a host name or an IP address (with or
	// without a port, which is dropped).
	NetworkAccessPoint string
	Roles              []Code
}

// Patient identifies the patient whose data an event concerns.
type Patient struct {
	ID     string
	Issuer string // Issuer of Patient ID, written as ID^^^Issuer
	Name   string
}

// Study identifies a study an event concerns, with the SOP classes and
// numbers of its instances involved.
type Study struct {
	UID        string
	Accession  string
	SOPClasses map[string]int // SOP Class UID → number of instances
	// Instances may list the SOP Instance UIDs (per class) when few.
	Instances map[string][]string
}

// Message is one DICOM audit message.
type Message struct {
	Time         time.Time
	Event        Code
	Types        []Code
	Action       Action
	Outcome      Outcome
	Description  string // EventOutcomeDescription: what failed
	Participants []Participant
	// Source is the audit source: pacsd's AE title or host.
	Source  string
	Site    string // AuditEnterpriseSiteID
	Objects []Object
}

// Object is a participant object: a patient, a study, a query, a user, a
// node.
type Object struct {
	ID        string
	IDType    Code
	Type      string // 1 person, 2 system object, 3 organisation, 4 other
	Role      string // ParticipantObjectTypeCodeRole
	LifeCycle string
	Name      string
	Query     []byte // instead of Name, for a query
	Details   []Detail
	Study     *Study // described in ParticipantObjectDescription
}

// Detail is a ParticipantObjectDetail: a named value, written in base64.
type Detail struct {
	Type  string
	Value []byte
}

// The XML structs follow the element order of the schema.

type xmlMessage struct {
	XMLName      xml.Name         `xml:"AuditMessage"`
	Event        xmlEvent         `xml:"EventIdentification"`
	Participants []xmlParticipant `xml:"ActiveParticipant"`
	Source       xmlSource        `xml:"AuditSourceIdentification"`
	Objects      []xmlObject      `xml:"ParticipantObjectIdentification"`
}

type xmlCode struct {
	Code    string `xml:"csd-code,attr"`
	System  string `xml:"codeSystemName,attr"`
	Display string `xml:"displayName,attr,omitempty"`
	Meaning string `xml:"originalText,attr"`
}

func xcode(c Code) xmlCode {
	return xmlCode{Code: c.Code, System: c.System, Display: c.Meaning, Meaning: c.Meaning}
}

type xmlEvent struct {
	Action      string    `xml:"EventActionCode,attr,omitempty"`
	Time        string    `xml:"EventDateTime,attr"`
	Outcome     string    `xml:"EventOutcomeIndicator,attr"`
	ID          xmlCode   `xml:"EventID"`
	Types       []xmlCode `xml:"EventTypeCode"`
	Description string    `xml:"EventOutcomeDescription,omitempty"`
}

type xmlParticipant struct {
	UserID    string    `xml:"UserID,attr"`
	AltUserID string    `xml:"AlternativeUserID,attr,omitempty"`
	UserName  string    `xml:"UserName,attr,omitempty"`
	Requestor bool      `xml:"UserIsRequestor,attr"`
	NAP       string    `xml:"NetworkAccessPointID,attr,omitempty"`
	NAPType   string    `xml:"NetworkAccessPointTypeCode,attr,omitempty"`
	Roles     []xmlCode `xml:"RoleIDCode"`
}

type xmlSourceType struct {
	Code string `xml:"csd-code,attr"`
}

type xmlSource struct {
	Site  string          `xml:"AuditEnterpriseSiteID,attr,omitempty"`
	ID    string          `xml:"AuditSourceID,attr"`
	Types []xmlSourceType `xml:"AuditSourceTypeCode"`
}

type xmlDetail struct {
	Type  string `xml:"type,attr"`
	Value string `xml:"value,attr"`
}

type xmlUID struct {
	UID string `xml:"UID,attr"`
}

type xmlSOPClass struct {
	UID       string   `xml:"UID,attr,omitempty"`
	Count     int      `xml:"NumberOfInstances,attr"`
	Instances []xmlUID `xml:"Instance"`
}

type xmlAccession struct {
	Number string `xml:"Number,attr"`
}

type xmlDescription struct {
	Accessions []xmlAccession `xml:"Accession"`
	SOPClasses []xmlSOPClass  `xml:"SOPClass"`
}

type xmlObject struct {
	ID          string           `xml:"ParticipantObjectID,attr"`
	Type        string           `xml:"ParticipantObjectTypeCode,attr,omitempty"`
	Role        string           `xml:"ParticipantObjectTypeCodeRole,attr,omitempty"`
	LifeCycle   string           `xml:"ParticipantObjectDataLifeCycle,attr,omitempty"`
	IDType      xmlCode          `xml:"ParticipantObjectIDTypeCode"`
	Name        *string          `xml:"ParticipantObjectName"`
	Query       *string          `xml:"ParticipantObjectQuery"`
	Details     []xmlDetail      `xml:"ParticipantObjectDetail"`
	Description []xmlDescription `xml:"ParticipantObjectDescription"`
}

// MarshalXML writes m as an AuditMessage element.
func (m *Message) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	return e.Encode(m.toXML())
}

// AppendXML appends m's XML encoding to dst.
func (m *Message) AppendXML(dst []byte) ([]byte, error) {
	var b strings.Builder
	if err := xml.NewEncoder(&b).Encode(m.toXML()); err != nil {
		return dst, err
	}
	return append(dst, b.String()...), nil
}

func (m *Message) toXML() *xmlMessage {
	x := &xmlMessage{
		Event: xmlEvent{
			Action:      string(m.Action),
			Time:        m.Time.UTC().Format("2006-01-02T15:04:05.000000Z"),
			Outcome:     string(m.Outcome),
			ID:          xcode(m.Event),
			Description: m.Description,
		},
		Source: xmlSource{Site: m.Site, ID: m.Source, Types: []xmlSourceType{{"4"}}},
	}
	if x.Event.Outcome == "" {
		x.Event.Outcome = string(Success)
	}
	for _, t := range m.Types {
		x.Event.Types = append(x.Event.Types, xcode(t))
	}
	for _, p := range m.Participants {
		xp := xmlParticipant{UserID: p.UserID, AltUserID: p.AlternativeUserID, UserName: p.UserName, Requestor: p.Requestor}
		xp.NAP, xp.NAPType = accessPoint(p.NetworkAccessPoint)
		for _, r := range p.Roles {
			xp.Roles = append(xp.Roles, xcode(r))
		}
		x.Participants = append(x.Participants, xp)
	}
	for _, o := range m.Objects {
		xo := xmlObject{ID: o.ID, Type: o.Type, Role: o.Role, LifeCycle: o.LifeCycle, IDType: xcode(o.IDType)}
		if o.Query != nil {
			q := base64.StdEncoding.EncodeToString(o.Query)
			xo.Query = &q
		} else {
			name := o.Name
			xo.Name = &name
		}
		for _, d := range o.Details {
			xo.Details = append(xo.Details, xmlDetail{Type: d.Type, Value: base64.StdEncoding.EncodeToString(d.Value)})
		}
		if s := o.Study; s != nil {
			var d xmlDescription
			if s.Accession != "" {
				d.Accessions = append(d.Accessions, xmlAccession{s.Accession})
			}
			classes := make([]string, 0, len(s.SOPClasses))
			for c := range s.SOPClasses {
				classes = append(classes, c)
			}
			sort.Strings(classes)
			for _, c := range classes {
				sc := xmlSOPClass{UID: c, Count: s.SOPClasses[c]}
				for _, i := range s.Instances[c] {
					sc.Instances = append(sc.Instances, xmlUID{i})
				}
				d.SOPClasses = append(d.SOPClasses, sc)
			}
			xo.Description = append(xo.Description, d)
		}
		x.Objects = append(x.Objects, xo)
	}
	return x
}

// accessPoint returns a network access point ID, without any port, and
// its type: 2 for an IP address, 1 for a name.
func accessPoint(s string) (id, typ string) {
	if s == "" {
		return "", ""
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().String(), "2"
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip.Unmap().String(), "2"
	}
	if host, _, ok := strings.Cut(s, ":"); ok && !strings.Contains(host, ":") {
		s = host
	}
	return s, "1"
}
