package conformance

import (
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse"
)

// Facts is everything the statement states. Defaults fills it from the
// code's tables; the caller overrides what the configuration changes.
type Facts struct {
	Product string // "pacsd"
	// Version is the release the statement describes; empty in the
	// statement kept in the repository, which describes its revision.
	Version                   string
	ImplementationClassUID    string
	ImplementationVersionName string

	// The DIMSE application entity.
	AETitle       string
	DIMSEAddr     string // listen address, e.g. "127.0.0.1:11112"
	MaxPDULength  int    // Maximum Length announced for received PDUs
	MaxSendPDU    int    // cap on PDUs sent to a peer that announces no limit
	MinSendPDU    int    // PDUs sent are never smaller, whatever the peer announces
	MaxAssoc      int    // concurrent associations accepted (0: no limit)
	ARTIM         time.Duration
	IdleTimeout   time.Duration
	MaxMatches    int
	CommitTimeout time.Duration // how long a commitment waits for spooled uploads

	// Services are the DIMSE services, as SCP and as SCU.
	Services []Service
	// Keys are the C-FIND matching keys (MatchingKeys).
	Keys []Key
	// CharacterSets are the Specific Character Set terms understood.
	CharacterSets []CharacterSet
	// Codecs say which compressed syntaxes pacsd decodes or encodes.
	// Empty means none: objects are kept and sent as received.
	Codecs []Codec

	// DICOMweb.
	HTTPAddr     string
	DICOMwebRoot string
	Web          []WebResource

	// Settings are the configuration options a PACS engineer sets when
	// connecting pacsd (the rows of the configuration section).
	Settings []Setting
	// Security lists the security measures, one paragraph each.
	Security []string
}

// Service is one DIMSE service class as pacsd plays it.
type Service struct {
	Name string
	// SOPClasses are UIDs of the abstract syntaxes.
	SOPClasses []string
	// TransferSyntaxes are the UIDs accepted (SCP) or proposed (SCU).
	TransferSyntaxes []string
	SCU, SCP         bool
	// Role is the role pacsd negotiates as an association acceptor,
	// when it differs from the service's plain SCP (SCP/SCU Role
	// Selection for C-GET).
	Role string
	// Extended names the extended negotiation supported; "None" if
	// empty.
	Extended string
	// Statuses are the statuses pacsd answers with as SCP (or acts on as
	// SCU).
	Statuses []Status
	// Conformance are paragraphs of SOP-specific conformance.
	Conformance []string
}

// Status is a DIMSE status code with the standard's meaning and when
// pacsd uses it.
type Status struct {
	Code  dimse.Status
	Cause string
}

// CharacterSet is a Defined Term of Specific Character Set.
type CharacterSet struct {
	Term string
	// Decoded: values in it are read (queries, stored data sets).
	// Encoded: responses may be written in it.
	Decoded, Encoded bool
}

// Codec is a transfer syntax pacsd can decode or encode pixel data of.
type Codec struct {
	TransferSyntax  string
	Decode, Encode  bool
	Implementation  string // library
	LossyParameters string // quality settings, for encoders of lossy syntaxes
}

// WebResource is a DICOMweb resource.
type WebResource struct {
	Service    string // QIDO-RS, WADO-RS, STOW-RS, WADO-URI
	Method     string
	Path       string // relative to the service root, or absolute for WADO-URI
	MediaTypes string
}

// Setting is a configuration option.
type Setting struct {
	Name, Default, Meaning string
}

// Defaults returns the facts of this build at its default configuration.
func Defaults() *Facts {
	f := &Facts{
		Product:                   "pacsd",
		ImplementationClassUID:    dicom.ImplementationClassUID,
		ImplementationVersionName: dicom.ImplementationVersionName,
		AETitle:                   "PACSD",
		DIMSEAddr:                 "127.0.0.1:11112",
		MaxPDULength:              256 << 10,
		MaxSendPDU:                1 << 20,
		MinSendPDU:                4096,
		MaxAssoc:                  64,
		ARTIM:                     30 * time.Second,
		IdleTimeout:               5 * time.Minute,
		MaxMatches:                10000,
		CommitTimeout:             10 * time.Minute,
		HTTPAddr:                  "127.0.0.1:8042",
		DICOMwebRoot:              "/dicom-web",
	}
	f.Services = services()
	f.Keys = MatchingKeys()
	f.CharacterSets = characterSets()
	f.Web = webResources()
	f.Settings = settings()
	f.Security = security()
	return f
}

// Transfer syntaxes of the services whose data sets pacsd reads and
// writes itself (dimse.Server accepts these for Verification, Query/
// Retrieve and Storage Commitment).
var commandSyntaxes = []string{uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.ExplicitVRBigEndian}

func services() []Service {
	findModels := []string{uid.PatientRootQueryRetrieveInformationModelFind, uid.StudyRootQueryRetrieveInformationModelFind}
	moveModels := []string{uid.PatientRootQueryRetrieveInformationModelMove, uid.StudyRootQueryRetrieveInformationModelMove}
	getModels := []string{uid.PatientRootQueryRetrieveInformationModelGet, uid.StudyRootQueryRetrieveInformationModelGet}
	return []Service{
		{
			Name:             "Verification",
			SOPClasses:       []string{uid.Verification},
			TransferSyntaxes: commandSyntaxes,
			SCP:              true, SCU: true,
			Statuses: []Status{{dimse.StatusSuccess, "always"}},
		},
		{
			Name:             "Storage",
			SOPClasses:       uid.StorageClasses(),
			TransferSyntaxes: uid.StorageSyntaxes(),
			SCP:              true, SCU: true,
			Extended: "None. Level 2 (Full) storage: every attribute, private and retired ones included, is kept, because the data set is kept byte for byte.",
			Statuses: []Status{
				{dimse.StatusSuccess, "the object is durable in storage (fsync of file and directory, or confirmed by S3) and its index row committed"},
				{dimse.StatusDataSetDoesNotMatch, "the object is stored whole, complete by its lengths, but with a part the parser cannot read"},
				{dimse.StatusDuplicateSOPInstance, "an instance with this SOP Instance UID is archived and the duplicate policy refuses the new one: under same-source-and-series (the default), one from another calling AE or into another study or series"},
				{dimse.StatusOutOfResources, "storage or the index failed or did not answer in time; the sender should retry"},
				{dimse.StatusDataSetMismatch, "the data set's SOP Class or SOP Instance UID differs from the command's"},
				{dimse.StatusCannotUnderstand, "not a DICOM data set, its identifying UIDs are missing or invalid (PS3.5 §9.1), or it is truncated (a value runs past its end, or a sequence or item of undefined length is never closed); nothing is stored"},
			},
			Conformance: []string{
				"The data set is kept byte for byte as received, behind File Meta Information that pacsd writes, so that nothing a sender put in it, private attributes included, is lost. pacsd never coerces an attribute, so it never answers 0xB000.",
				"An instance whose SOP Instance UID is already archived is handled by the duplicate policy (`duplicates`). The default, same-source-and-series, replaces it when it comes from the same calling AE into the same study and series and refuses it with 0x0111 otherwise; a byte-for-byte copy of the archived data set is answered with success from any AE and changes nothing. `replace` always replaces, `keep` keeps the archived one and answers success, `reject` refuses every resend with 0x0111. A replacement is written beside the version it replaces and recorded before the old one is deleted, so that a failure at any point leaves either version whole.",
				"The presentation context's transfer syntax is the first one the proposer lists that pacsd accepts: the proposer's preference wins, and every storage syntax is accepted, since the object is kept as received.",
				"As SCU (C-MOVE and C-GET sub-operations, Storage Commitment report targets), each instance is offered in its stored transfer syntax and in the uncompressed ones; when the destination accepts only an uncompressed syntax the data set is converted between Implicit and Explicit VR Little Endian, Explicit VR Big Endian and Deflated. A sub-operation whose instance cannot be converted to a syntax the destination accepts fails, with the reason logged.",
			},
		},
		{
			Name:             "Query/Retrieve — FIND",
			SOPClasses:       findModels,
			TransferSyntaxes: commandSyntaxes,
			SCP:              true, SCU: true,
			Statuses: []Status{
				{dimse.StatusPending, "a match, when every matching key was matched"},
				{dimse.StatusPendingWarning, "a match, when some matching key is one the index does not match on (it is returned as a return key)"},
				{dimse.StatusSuccess, "all matches sent"},
				{dimse.StatusCancel, "the query was cancelled by C-CANCEL"},
				{dimse.StatusOutOfResources, "more than the maximum number of matches (`max_matches`); narrow the query"},
				{dimse.StatusDataSetMismatch, "the identifier is not a valid query (unknown level, a missing unique key in a hierarchical query, a malformed value)"},
				{dimse.StatusUnableToProcess, "the index failed"},
			},
			Conformance: []string{
				"Levels PATIENT (Patient Root only), STUDY, SERIES and IMAGE. Queries are hierarchical (PS3.4 C.4.1.2.1); relational queries are not negotiated over DIMSE (QIDO-RS queries are relational).",
				"Matching follows PS3.4 C.2.2.2: single value, universal, wild card (`*`, `?`), range (DA, TM, DT; closed and open), list of UIDs, and sequence matching on the keys listed below. Person names match case-insensitively unless `case_sensitive_names` is set. Keys the index does not keep are returned empty, and each match is then answered with 0xFF01.",
				"Pending responses are sent as matches are read from the index. The response is encoded in the query's single character set when every value fits in it, otherwise in ISO_IR 192.",
			},
		},
		{
			Name:             "Query/Retrieve — MOVE",
			SOPClasses:       moveModels,
			TransferSyntaxes: commandSyntaxes,
			SCP:              true, SCU: true,
			Statuses: retrieveStatuses(true),
			Conformance: []string{
				"Move destinations are the remote AEs configured with `remote_aes` (AET=HOST:PORT, or AET=tls://HOST:PORT for DICOM TLS); any other destination is refused with 0xA801. Sub-operations run on a new association to the destination.",
				"Pending responses carry the remaining, completed, failed and warning counts; the final response lists the Failed SOP Instance UIDs. C-CANCEL stops the sub-operations.",
			},
		},
		{
			Name:             "Query/Retrieve — GET",
			SOPClasses:       getModels,
			TransferSyntaxes: commandSyntaxes,
			SCP:              true, SCU: true,
			Role:     "SCP for the GET models; SCU role of each Storage SOP class through SCP/SCU Role Selection",
			Statuses: retrieveStatuses(false),
			Conformance: []string{
				"Sub-operations are C-STOREs on the requesting association, in presentation contexts for which the requester proposed the SCP role through SCP/SCU Role Selection (PS3.7 D.3.3.4).",
			},
		},
		{
			Name:             "Storage Commitment Push Model",
			SOPClasses:       []string{uid.StorageCommitmentPushModel},
			TransferSyntaxes: commandSyntaxes,
			SCP:              true, SCU: true,
			Statuses: []Status{
				{dimse.StatusSuccess, "N-ACTION accepted; the result follows by N-EVENT-REPORT"},
				{dimse.StatusNoSuchActionType, "Action Type ID other than 1"},
				{dimse.StatusInvalidArgumentValue, "malformed Transaction UID"},
				{dimse.StatusDuplicateInvocation, "a commitment of this Transaction UID is already in progress"},
				{dimse.StatusNoSuchObjectInstance, "(Failure Reason of a failed instance) no such instance is archived"},
				{dimse.StatusClassInstanceConflict, "(Failure Reason) the instance is archived under another SOP class"},
				{dimse.StatusProcessingFailure, "(Failure Reason) its object could not be checked in storage"},
			},
			Conformance: []string{
				"An instance is committed when it is indexed under the requested SOP class, its object is in storage with the indexed size and, with S3 under a local spool, uploaded to the bucket; instances still being uploaded are waited for.",
				"The N-EVENT-REPORT (Event Type 1, or 2 with the Failed SOP Sequence) is sent on the requesting association if it is still open, otherwise on a new association to the requesting AE, which must be a configured remote AE; pacsd proposes the SCP role for it.",
			},
		},
	}
}

func retrieveStatuses(move bool) []Status {
	s := []Status{
		{dimse.StatusPending, "sub-operations continue"},
		{dimse.StatusSuccess, "every sub-operation succeeded"},
		{dimse.StatusSubOperationsWarning, "one or more sub-operations failed or ended with a warning"},
		{dimse.StatusCancel, "cancelled by C-CANCEL"},
	}
	if move {
		s = append(s,
			Status{dimse.StatusMoveDestinationUnknown, "the Move Destination is not a configured remote AE"},
			Status{dimse.StatusOutOfResourcesSubOperations, "the destination could not be reached or refused the association"})
	}
	return append(s,
		Status{dimse.StatusDataSetMismatch, "the identifier is not a valid query"},
		Status{dimse.StatusUnableToProcess, "the index failed"})
}

// characterSets are the terms pacsd's text decoder reads; responses are
// written in the single-byte terms and UTF-8 (dicom.ResponseCharset),
// never with code extensions.
func characterSets() []CharacterSet {
	var out []CharacterSet
	add := func(term string, encoded bool) {
		out = append(out, CharacterSet{Term: term, Decoded: true, Encoded: encoded})
	}
	add("ISO_IR 6 (default repertoire)", true)
	for _, ir := range []string{"100", "101", "109", "110", "144", "127", "126", "138", "148", "203", "166", "13"} {
		add("ISO_IR "+ir, encodable("ISO_IR "+ir))
	}
	add("ISO_IR 192", true)
	add("GB18030", encodable("GB18030"))
	add("GBK", encodable("GBK"))
	for _, ir := range []string{"6", "100", "101", "109", "110", "144", "127", "126", "138", "148", "203", "166", "13", "87", "159", "149", "58"} {
		add("ISO 2022 IR "+ir, false)
	}
	return out
}

// encodable asks dicom.ResponseCharset whether responses are written in
// term: it answers term itself when it can encode a plain ASCII value in
// it, and ISO_IR 192 otherwise.
func encodable(term string) bool {
	ds := &dicom.Dataset{Elements: []dicom.Element{{Tag: 0x00100010, VR: "PN", Values: []string{"DOE^JOHN"}}}}
	return dicom.ResponseCharset([]string{term}, ds) == term
}

func webResources() []WebResource {
	const json = "application/dicom+json"
	return []WebResource{
		{"QIDO-RS", "GET", "/studies, /series, /instances", json},
		{"QIDO-RS", "GET", "/studies/{study}/series, /studies/{study}/instances, /studies/{study}/series/{series}/instances", json},
		{"WADO-RS", "GET", "/studies/{study}, …/series/{series}, …/instances/{instance}", `multipart/related; type="application/dicom"`},
		{"WADO-RS", "GET", "…/metadata (each level)", json},
		{"WADO-RS", "GET", "…/instances/{instance}/frames/{list}", "application/octet-stream (native), the compressed frame's own type (encapsulated)"},
		{"WADO-RS", "GET", "…/bulkdata/{offset}/{length}", "application/octet-stream, multipart/related"},
		{"WADO-RS", "GET", "…/rendered, …/frames/{n}/rendered, …/thumbnail (each level)", "image/jpeg, image/png, image/gif"},
		{"STOW-RS", "POST", "/studies, /studies/{study}", `multipart/related; type="application/dicom"`},
		{"WADO-URI", "GET", "/wado?requestType=WADO&studyUID=…&seriesUID=…&objectUID=…", "application/dicom, image/jpeg, image/png"},
	}
}

func settings() []Setting {
	return []Setting{
		{"ae_title", "PACSD", "the AE title pacsd answers to; associations calling another are rejected"},
		{"dimse_addr", "127.0.0.1:11112 (:11112 with an allow-list)", "DIMSE listen address"},
		{"allow_ae", "none", "calling AE titles allowed to associate, each optionally AET@HOST or AET@CIDR"},
		{"allow_any_ae", "false", "accept associations from any calling AE on any address"},
		{"remote_aes", "none", "remote AEs: C-MOVE destinations and Storage Commitment report targets, AET=HOST:PORT or AET=tls://HOST:PORT"},
		{"max_pdu", "262144", "Maximum Length of received PDUs"},
		{"max_associations", "64", "concurrent associations (0: no limit)"},
		{"idle_timeout", "5m", "an association idle this long is aborted"},
		{"max_matches", "10000", "matches of a C-FIND before it ends with 0xA700, and of a QIDO-RS search without a smaller limit"},
		{"case_sensitive_names", "false", "match person names case-sensitively"},
		{"duplicates", "same-source-and-series", "what to do with an instance already archived: same-source-and-series, replace, keep or reject"},
		{"http_addr", "127.0.0.1:8042", "HTTP listen address of DICOMweb"},
		{"dicomweb_root", "/dicom-web", "path of the DICOMweb services"},
		{"cors_origins", "*", "origins allowed to call DICOMweb from a browser"},
		{"max_body", "4294967296", "largest STOW-RS request body, in bytes"},
	}
}

func security() []string {
	return []string{
		"Without a calling AE allow-list pacsd listens for DIMSE on loopback only. With one (`allow_ae`), an association is accepted only from a listed calling AE title, optionally tied to a host name, address or network; associations calling another AE title than pacsd's are rejected (PS3.8 A-ASSOCIATE-RJ, called AE title not recognized).",
		"Outgoing associations to remote AEs configured as tls://HOST:PORT use TLS 1.2 or 1.3, verifying the peer's certificate against the system's trusted roots.",
		"DICOMweb and WADO-URI listen on loopback by default. pacsd does not authenticate HTTP clients in this release: put it behind a reverse proxy that does before exposing it to a network.",
	}
}
