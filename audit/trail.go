package audit

import (
	"time"
)

// Actor is who did what a Trail records: a user, by the name of the
// principal that was authenticated (a token's subject, a token file's
// name, an AE title), and where they called from. For DIMSE, AETitle is
// the calling AE title.
type Actor struct {
	User    string
	AETitle string
	// Addr is the caller's IP address or host name, with or without a
	// port.
	Addr string
}

// participant returns a as an active participant.
func (a Actor) participant() Participant {
	p := Participant{UserID: a.User, NetworkAccessPoint: a.Addr}
	if a.AETitle != "" {
		p.AlternativeUserID = "AETITLES=" + a.AETitle
		if p.UserID == "" {
			p.UserID = a.AETitle
		}
	}
	if p.UserID == "" {
		p.UserID = "unknown"
	}
	return p
}

// node names a as the subject of an alert: "AE@address" or the address.
func (a Actor) node() Object {
	n := a.Addr
	if a.AETitle != "" {
		n = a.AETitle + "@" + a.Addr
	}
	return NodeObject(n)
}

// Trail records what pacsd's services do, one call per event: each
// method builds the PS3.15 A.5 message of its event, with pacsd itself
// (App) as the other participant, and hands it to Record. The front
// doors and the archive call it where the event happens; the calls are
// cheap (Journal.Log queues) and never fail the operation recorded.
//
// A nil *Trail records nothing, for services built without one.
type Trail struct {
	// Record receives each message: (*Journal).Log.
	Record func(*Message)
	// App is pacsd: Application(aeTitle, host).
	App Participant
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (t *Trail) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

func (t *Trail) record(m *Message) {
	if t != nil && t.Record != nil {
		t.Record(m)
	}
}

// outcome is Success, or MinorFailure when the operation failed: the
// request was refused or went wrong, pacsd carries on.
func outcome(err error) Outcome {
	if err != nil {
		return MinorFailure
	}
	return Success
}

// why is the outcome description of err.
func why(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Started records pacsd starting, with its configuration loaded
// (Application Activity, Application Start).
func (t *Trail) Started() {
	if t == nil {
		return
	}
	t.record(ApplicationActivity(t.now(), true, t.App, Success))
}

// Stopped records pacsd stopping (Application Stop); err is why, if it
// stopped on a failure.
func (t *Trail) Stopped(err error) {
	if t == nil {
		return
	}
	m := ApplicationActivity(t.now(), false, t.App, outcome(err))
	m.Description = why(err)
	t.record(m)
}

// ConfigurationReloaded records a configuration reloaded while running,
// such as certificates and tokens on SIGHUP (Security Alert, Security
// Configuration): what says what was reloaded, err what failed.
func (t *Trail) ConfigurationReloaded(what string, err error) {
	if t == nil {
		return
	}
	desc := "reloaded " + what
	if err != nil {
		desc = "reloading " + what + " failed: " + err.Error()
	}
	t.record(SecurityAlert(t.now(), TypeSecurityConfiguration, outcome(err), t.App, desc))
}

// AssociationAccepted records a DIMSE association accepted from who,
// calling calledAE (Security Alert, Node Authentication, success).
func (t *Trail) AssociationAccepted(who Actor, calledAE string) {
	if t == nil {
		return
	}
	m := SecurityAlert(t.now(), TypeNodeAuthentication, Success, t.App, "association accepted, called AE "+calledAE, who.node())
	m.Participants = append(m.Participants, who.participant())
	t.record(m)
}

// AssociationRefused records a DIMSE association, or a TLS handshake,
// refused (Security Alert, Node Authentication, minor failure): reason
// says why.
func (t *Trail) AssociationRefused(who Actor, reason string) {
	if t == nil {
		return
	}
	m := SecurityAlert(t.now(), TypeNodeAuthentication, MinorFailure, t.App, reason, who.node())
	m.Participants = append(m.Participants, who.participant())
	t.record(m)
}

// LoginFailed records a credential refused, such as an invalid or expired
// bearer token (User Authentication, Login, minor failure).
func (t *Trail) LoginFailed(who Actor, reason string) {
	if t == nil {
		return
	}
	t.record(UserAuthentication(t.now(), true, MinorFailure, who.participant(), t.App, reason))
}

// Restricted records an authenticated user refused a request beyond
// their scopes (Security Alert, Use of Restricted Function).
func (t *Trail) Restricted(who Actor, reason string) {
	if t == nil {
		return
	}
	m := SecurityAlert(t.now(), TypeUseOfRestrictedFunction, MinorFailure, t.App, reason, UserObject(who.participant().UserID))
	m.Participants = append(m.Participants, who.participant())
	t.record(m)
}

// Reidentified records an admin looking up the original of a
// pseudonym that de-identification gave (Security Alert, Use of
// Restricted Function): kind says what it replaced, a UID or a patient;
// err is why the lookup failed, if it did.
func (t *Trail) Reidentified(who Actor, kind, pseudonym string, err error) {
	if t == nil {
		return
	}
	desc := "re-identified " + kind + " " + pseudonym
	if err != nil {
		desc += ": " + err.Error()
	}
	m := SecurityAlert(t.now(), TypeUseOfRestrictedFunction, outcome(err), t.App, desc, UserObject(who.participant().UserID))
	r := who.participant()
	r.Requestor = true
	m.Participants = append(m.Participants, r)
	t.record(m)
}

// Stored records instances of one study received from who (C-STORE,
// STOW-RS, a C-MOVE or C-GET pulled in): DICOM Instances Transferred,
// Create, or Update when replaced is set (an instance replaced one
// already archived); err is the failure, if the store failed.
func (t *Trail) Stored(who Actor, replaced bool, err error, patient Patient, study Study) {
	if t == nil {
		return
	}
	action := ActionCreate
	if replaced {
		action = ActionUpdate
	}
	source := who.participant()
	source.Requestor = true
	m := InstancesTransferred(t.now(), action, outcome(err), source, t.App, patient, study)
	m.Description = why(err)
	t.record(m)
}

// Queried records a query by who (C-FIND with the SOP class of its
// information model and its identifier's bytes in transferSyntax, or
// QIDO-RS with "" and its URL's query).
func (t *Trail) Queried(who Actor, err error, sopClass string, query []byte, transferSyntax string) {
	if t == nil {
		return
	}
	m := Query(t.now(), outcome(err), who.participant(), t.App, sopClass, query, transferSyntax)
	m.Description = why(err)
	t.record(m)
}

// Sending records the start of sending a patient's studies from pacsd to
// dest (C-MOVE, C-GET, a route, an export): Begin Transferring DICOM
// Instances. dest is the destination node; requestor, if not zero, who
// asked, recorded as a third participant.
func (t *Trail) Sending(requestor, dest Actor, patient Patient, studies ...Study) {
	if t == nil {
		return
	}
	m := BeginTransferring(t.now(), t.App, dest.participant(), patient, studies...)
	if requestor != (Actor{}) {
		r := requestor.participant()
		r.Requestor = true
		m.Participants = append(m.Participants, r)
	}
	t.record(m)
}

// Sent records instances sent from pacsd to dest (C-MOVE and C-GET
// sub-operations, routes, exports, WADO-RS to a user): DICOM Instances
// Transferred, Read; err is the failure, if some were not sent.
func (t *Trail) Sent(requestor, dest Actor, err error, patient Patient, studies ...Study) {
	if t == nil {
		return
	}
	m := InstancesTransferred(t.now(), ActionRead, outcome(err), t.App, dest.participant(), patient, studies...)
	m.Description = why(err)
	if requestor != (Actor{}) && requestor != dest {
		r := requestor.participant()
		r.Requestor = true
		m.Participants = append(m.Participants, r)
	}
	t.record(m)
}

// Deleted records instances deleted by who: whole studies (DICOM Study
// Deleted) or instances and series of studies that remain (Instances
// Accessed, Delete).
func (t *Trail) Deleted(who Actor, wholeStudies bool, err error, patient Patient, studies ...Study) {
	if t == nil {
		return
	}
	m := InstancesDeleted(t.now(), wholeStudies, outcome(err), who.participant(), patient, studies...)
	m.Description = why(err)
	t.record(m)
}

// Corrected records instances whose attributes who changed in place,
// such as a patient's demographics corrected (Instances Accessed,
// Update).
func (t *Trail) Corrected(who Actor, err error, patient Patient, studies ...Study) {
	if t == nil {
		return
	}
	m := InstancesAccessed(t.now(), ActionUpdate, outcome(err), who.participant(), patient, studies...)
	m.Description = why(err)
	t.record(m)
}
