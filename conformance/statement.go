package conformance

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse"
)

// builder numbers sections as it adds them.
type builder struct {
	doc     *document
	counter []int
	cur     *section
}

func (b *builder) section(level int, title string) {
	for len(b.counter) < level {
		b.counter = append(b.counter, 0)
	}
	b.counter = b.counter[:level]
	b.counter[level-1]++
	parts := make([]string, level)
	for i, n := range b.counter {
		parts[i] = strconv.Itoa(n)
	}
	b.cur = &section{level: level, number: strings.Join(parts, "."), title: title}
	b.doc.sections = append(b.doc.sections, b.cur)
}

// front adds an unnumbered section before the numbered ones, as the
// template's overview is.
func (b *builder) front(title string) {
	b.cur = &section{level: 1, title: title}
	b.doc.sections = append(b.doc.sections, b.cur)
}

func (b *builder) add(blocks ...any) { b.cur.blocks = append(b.cur.blocks, blocks...) }

func (b *builder) para(format string, args ...any) { b.add(para(fmt.Sprintf(format, args...))) }

func uidName(u string) string {
	e, ok := uid.Lookup(u)
	if !ok {
		return u
	}
	if e.Retired {
		return e.Name + " (retired)"
	}
	return e.Name
}

func yesNo(v bool) string {
	if v {
		return "Yes"
	}
	return "No"
}

// statement lays out the conformance statement of f in the sections of
// the PS3.2 Annex A template.
func statement(f *Facts) *document {
	d := &document{title: "DICOM Conformance Statement: " + f.Product}
	version := f.Version
	if version == "" {
		version = "this source revision"
	}
	d.subtitle = []string{
		"Product: " + f.Product + ", version: " + version,
		"Implementation Class UID: " + f.ImplementationClassUID + ", Implementation Version Name: " + f.ImplementationVersionName,
	}
	b := &builder{doc: d}
	storage := serviceNamed(f, "Storage")

	b.front("Conformance statement overview")
	b.para("%s is a vendor-neutral DICOM archive. It accepts instances from modalities and other archives over DIMSE and DICOMweb, keeps each one byte for byte as received in object storage (a filesystem or an S3-compatible bucket), indexes its header (SQLite or PostgreSQL), and answers queries and retrievals over DIMSE and DICOMweb.", f.Product)
	b.para("This statement is generated from the tables %s runs on (SOP classes, transfer syntaxes, status codes, matching keys); the conformance notes kept beside it (`docs/conformance.md`) explain the choices and limits in prose.", f.Product)
	rows := [][]string{}
	for _, s := range f.Services {
		var classes string
		if s.Name == "Storage" {
			classes = fmt.Sprintf("every Storage SOP class of PS3.4 Annex B: %d classes (see Annexes: Storage SOP classes)", len(s.SOPClasses))
		} else {
			var names []string
			for _, u := range s.SOPClasses {
				names = append(names, uidName(u))
			}
			classes = strings.Join(names, "; ")
		}
		rows = append(rows, []string{s.Name, classes, yesNo(s.SCU), yesNo(s.SCP)})
	}
	b.add(para("Network services:"), table{head: []string{"Service", "SOP classes", "User of service (SCU)", "Provider of service (SCP)"}, rows: rows})
	b.add(para("Web services:"), table{
		head: []string{"Service", "User agent", "Origin server"},
		rows: [][]string{{"QIDO-RS (search)", "No", "Yes"}, {"WADO-RS (retrieve)", "No", "Yes"}, {"STOW-RS (store)", "No", "Yes"}, {"WADO-URI", "No", "Yes"}},
	})
	b.para("Media services: none. %s reads and writes no media (PS3.10 files are imported and exported over the network only).", f.Product)

	b.section(1, "Introduction")
	b.section(2, "Revision history")
	b.add(table{head: []string{"Version", "Description"}, rows: [][]string{{version, "Generated from the code of this version"}}})
	b.section(2, "Audience and remarks")
	b.para("Written for the engineers who connect %s to modalities, workstations, viewers and other archives. It states what %s does; interoperability still has to be tested with each peer.", f.Product, f.Product)
	b.section(2, "Definitions and references")
	b.add(list{
		"AE: Application Entity; SCU and SCP: Service Class User and Provider (PS3.7).",
		"ARTIM: Association Request/Reject/Release Timer (PS3.8).",
		"QIDO-RS, WADO-RS, STOW-RS, WADO-URI: the DICOMweb services of PS3.18.",
		"References: PS3.2 (conformance), PS3.4 (service classes), PS3.5 (data structures), PS3.7 (message exchange), PS3.8 (network communication), PS3.15 (security), PS3.18 (web services).",
	})

	b.section(1, "Networking")
	b.section(2, "Implementation model")
	b.section(3, "Application data flow")
	b.add(pre(fmt.Sprintf(`  Modality / archive --C-STORE-->  +--------------+ --> object storage (bytes as received)
  Workstation      --C-FIND---->   |  %-12s| --> index (SQLite / PostgreSQL)
                   --C-MOVE/GET->  |   AE %-8s| --C-STORE--> move destination
  Viewer (HTTP)    --QIDO/WADO-->  |              |
                   --STOW------->  +--------------+ --N-EVENT-REPORT--> commitment requester`, f.Product, f.AETitle)))
	b.section(3, "Functional definition of AEs")
	b.para("One application entity, %s (configured with `ae_title`), provides every DIMSE service: it stores what it receives, answers queries from the index, sends instances for C-MOVE and C-GET, and reports Storage Commitment results. The same archive serves DICOMweb over HTTP.", f.AETitle)
	b.section(3, "Sequencing of real-world activities")
	b.para("An instance is queryable and retrievable as soon as its C-STORE (or STOW-RS) has been answered with success: the response is sent only once the object is durable in storage and its index row committed. A Storage Commitment request for it can be committed from that moment on.")

	b.section(2, "AE specifications")
	b.section(3, "AE "+f.AETitle)
	b.section(4, "SOP classes")
	rows = nil
	for _, s := range f.Services {
		if s.Name == "Storage" {
			rows = append(rows, []string{fmt.Sprintf("every Storage SOP class (%d, see Annexes: Storage SOP classes)", len(s.SOPClasses)), "", yesNo(s.SCU), yesNo(s.SCP)})
			continue
		}
		for _, u := range s.SOPClasses {
			rows = append(rows, []string{uidName(u), u, yesNo(s.SCU), yesNo(s.SCP)})
		}
	}
	b.add(table{head: []string{"SOP class", "UID", "SCU", "SCP"}, rows: rows})

	b.section(4, "Association policies")
	b.para("Application context name: `1.2.840.10008.3.1.1.1`.")
	maxAssoc := strconv.Itoa(f.MaxAssoc)
	if f.MaxAssoc == 0 {
		maxAssoc = "unlimited"
	}
	b.add(para("Number of associations:"), table{head: []string{"Associations", "Maximum"}, rows: [][]string{
		{"as acceptor, at once", maxAssoc + " (`max_associations`); further requests are rejected (transient, local limit exceeded)"},
		{"as initiator, at once", "one per C-MOVE in progress and per commitment report that cannot go on its requesting association"},
	}})
	b.para("Asynchronous operations are not supported: the maximum number of outstanding operations is negotiated down to one invoked and one performed.")
	b.add(para("Implementation identifying information:"), table{head: []string{"Item", "Value"}, rows: [][]string{
		{"Implementation Class UID", f.ImplementationClassUID},
		{"Implementation Version Name", f.ImplementationVersionName},
	}})

	b.section(4, "Association initiation policy")
	b.para("%s initiates associations to send the instances of a C-MOVE to its destination, to send a Storage Commitment result when the requesting association has closed, and, for `pacsd retrieve` and `pacsd migrate`, to query and retrieve from another archive (C-FIND, C-GET or C-MOVE as SCU, C-ECHO).", f.Product)
	b.para("For a C-MOVE, one presentation context is proposed per SOP class of the instances to send, with the instance's stored transfer syntax and the uncompressed ones (Explicit VR Little Endian, Implicit VR Little Endian). Storage Commitment reports propose the Storage Commitment Push Model with the SCP role (SCP/SCU Role Selection). Queries and retrievals of `pacsd retrieve` propose the Study Root models with Explicit and Implicit VR Little Endian.")
	b.para("`pacsd migrate` queries with the Study Root FIND model (STUDY level to discover, IMAGE level, or SERIES then IMAGE for an archive without relational queries, to verify), one association per study in flight and one for discovery. Its C-GET associations propose, for each storage SOP class the IMAGE-level query lists, one presentation context per transfer syntax, uncompressed and compressed (up to 128 contexts), with the SCP role of each (SCP/SCU Role Selection), so that the source can send every instance in the syntax it holds it in. For a C-MOVE, `pacsd migrate` accepts associations from the source on a listener of its own, as its destination, and keeps what arrives as received. An association rejected as transient (too many associations) is tried again after a wait that doubles up to a minute.")

	b.section(4, "Association acceptance policy")
	b.para("An association is accepted when its called AE title is %s's and, with an allow-list (`allow_ae`), its calling AE title and address are listed; otherwise it is rejected: called AE title not recognized (permanent, service user, reason 7), calling AE title not recognized (reason 3). Without an allow-list, %s listens on loopback only. Every presentation context is accepted or rejected on its own: an unknown abstract syntax rejects that context (abstract syntax not supported), never the association.", f.AETitle, f.Product)
	for _, s := range f.Services {
		if !s.SCP {
			continue
		}
		b.section(5, s.Name)
		var ts []string
		for _, t := range s.TransferSyntaxes {
			ts = append(ts, uidName(t)+" ("+t+")")
		}
		role := "SCP"
		if s.Role != "" {
			role = s.Role
		}
		ext := s.Extended
		if ext == "" {
			ext = "None"
		}
		if s.Name == "Storage" {
			b.para("Presentation contexts: each of the %d Storage SOP classes listed in the Annexes with any of the %d transfer syntaxes listed there, role SCP. The first transfer syntax of the proposal that %s accepts is chosen. Extended negotiation: %s", len(s.SOPClasses), len(s.TransferSyntaxes), f.Product, ext)
		} else {
			rows = nil
			for _, u := range s.SOPClasses {
				rows = append(rows, []string{uidName(u) + " (" + u + ")", strings.Join(ts, "; "), role, ext})
			}
			b.add(para("Accepted presentation contexts:"), table{head: []string{"Abstract syntax", "Transfer syntaxes", "Role", "Extended negotiation"}, rows: rows})
		}
		for _, p := range s.Conformance {
			b.add(para(p))
		}
		if len(s.Statuses) > 0 {
			rows = nil
			for _, st := range s.Statuses {
				rows = append(rows, []string{statusCode(st.Code), statusMeaning(st.Code), st.Cause})
			}
			b.add(para("Status codes sent:"), table{head: []string{"Code", "Meaning (PS3.4, PS3.7)", "When"}, rows: rows})
		}
		if strings.HasSuffix(s.Name, "FIND") && len(f.Keys) > 0 {
			b.add(para("Matching keys, by level of the Patient Root model (in the Study Root model the PATIENT keys are keys of the STUDY level). Every other attribute the index keeps is a return key; the unique keys of the levels above must be given in hierarchical queries."))
			rows = nil
			for _, k := range f.Keys {
				rows = append(rows, []string{k.Level, keyName(k), keyTag(k), strings.Join(k.Matching, ", ")})
			}
			b.add(table{head: []string{"Level", "Attribute", "Tag", "Matching"}, rows: rows})
		}
	}

	b.section(2, "Network interfaces")
	b.section(3, "Physical network interface")
	b.para("%s uses the TCP/IP stack of its host, over whatever physical network the host has; it listens on `dimse_addr` for DIMSE (default %s) and on `http_addr` for HTTP (default %s). IPv4 and IPv6 are both supported.", f.Product, f.DIMSEAddr, f.HTTPAddr)

	b.section(2, "Configuration")
	b.section(3, "AE title and presentation address mapping")
	b.para("The local AE title is `ae_title` (default %s), listening on `dimse_addr`. Remote AEs (move destinations, commitment report targets) are configured as `remote_aes` entries AET=HOST:PORT, or AET=tls://HOST:PORT for DICOM TLS.", f.AETitle)
	b.section(3, "Parameters")
	rows = [][]string{
		{"ARTIM timeout", f.ARTIM.String(), "fixed"},
		{"Maximum PDU length received", strconv.Itoa(f.MaxPDULength) + " bytes", "`max_pdu`"},
		{"PDU length sent", fmt.Sprintf("the peer's Maximum Length, at least %d and at most %d bytes when the peer announces no limit", f.MinSendPDU, f.MaxSendPDU), "fixed"},
		{"Idle association timeout", f.IdleTimeout.String(), "`idle_timeout`"},
		{"Matches of a C-FIND", strconv.Itoa(f.MaxMatches), "`max_matches`"},
		{"Wait for spooled uploads before a commitment", f.CommitTimeout.String(), "fixed"},
	}
	b.add(table{head: []string{"Parameter", "Default", "Set by"}, rows: rows})
	if len(f.Settings) > 0 {
		rows = nil
		for _, s := range f.Settings {
			rows = append(rows, []string{"`" + s.Name + "`", s.Default, s.Meaning})
		}
		b.add(para("Configuration options that matter to peers (each is a flag, an environment variable PACSD_NAME and a key of the configuration file):"), table{head: []string{"Option", "Default", "Meaning"}, rows: rows})
	}

	b.section(2, "Web services")
	b.para("DICOMweb (PS3.18) is served on `http_addr` under `dicomweb_root` (default %s); WADO-URI at /wado. Searches use the same matching engine and keys as C-FIND, relationally, with `limit`, `offset`, `fuzzymatching` and `includefield`; an unknown parameter or a malformed value is answered with 400 and the reason.", f.DICOMwebRoot)
	rows = nil
	for _, r := range f.Web {
		rows = append(rows, []string{r.Service, r.Method, r.Path, r.MediaTypes})
	}
	b.add(table{head: []string{"Service", "Method", "Resource", "Media types"}, rows: rows})

	b.section(1, "Media interchange")
	b.para("Not supported.")

	b.section(1, "Support of extended character sets")
	b.para("Values are decoded from the Specific Character Set of each data set and query. Responses are written in the requester's single character set when every value fits in it, otherwise in ISO_IR 192 (UTF-8), never with code extensions. Stored data sets are never re-encoded.")
	rows = nil
	for _, c := range f.CharacterSets {
		rows = append(rows, []string{c.Term, yesNo(c.Decoded), yesNo(c.Encoded)})
	}
	b.add(table{head: []string{"Defined term", "Read", "Written in responses"}, rows: rows})

	b.section(1, "Security")
	for _, p := range f.Security {
		b.add(para(p))
	}

	b.section(1, "Annexes")
	b.section(2, "IOD contents")
	b.para("%s creates no SOP instances. Received instances are stored unchanged; the attributes it indexes are the matching keys above and the return keys of PS3.4 C.6 and PS3.18 Table 10.6.1-5.", f.Product)
	b.section(2, "Data dictionary of private attributes")
	b.para("None: %s defines no private attributes. Private attributes of received instances are kept as received.", f.Product)
	b.section(2, "Coded terminology and templates")
	b.para("None used.")
	b.section(2, "Grayscale image consistency")
	b.para("The Grayscale Standard Display Function is not supported; rendered images apply the stored or requested window to the modality values.")
	b.section(2, "Standard extended, specialized and private SOP classes")
	b.para("None.")
	b.section(2, "Private transfer syntaxes")
	b.para("None.")
	if storage != nil {
		b.section(2, "Storage SOP classes")
		rows = nil
		for _, u := range storage.SOPClasses {
			rows = append(rows, []string{uidName(u), u})
		}
		b.add(table{head: []string{"SOP class", "UID"}, rows: rows})
		b.section(2, "Transfer syntaxes of storage")
		rows = nil
		for _, u := range storage.TransferSyntaxes {
			rows = append(rows, []string{uidName(u), u})
		}
		b.add(table{head: []string{"Transfer syntax", "UID"}, rows: rows})
	}
	b.section(2, "Codecs")
	if len(f.Codecs) == 0 {
		b.para("None: compressed pixel data is kept and sent as received. Data sets are converted only between the uncompressed transfer syntaxes (Implicit and Explicit VR Little Endian, Explicit VR Big Endian, Deflated).")
	} else {
		rows = nil
		for _, c := range f.Codecs {
			rows = append(rows, []string{uidName(c.TransferSyntax), c.TransferSyntax, yesNo(c.Decode), yesNo(c.Encode), c.Implementation, c.LossyParameters})
		}
		b.add(table{head: []string{"Transfer syntax", "UID", "Decode", "Encode", "Implementation", "Lossy parameters"}, rows: rows})
	}
	return d
}

func serviceNamed(f *Facts, name string) *Service {
	for i := range f.Services {
		if f.Services[i].Name == name {
			return &f.Services[i]
		}
	}
	return nil
}

func statusCode(s dimse.Status) string { return fmt.Sprintf("0x%04X", uint16(s)) }

// statusMeaning is the meaning dimse.Status gives a code, without the code.
func statusMeaning(s dimse.Status) string {
	str := s.String()
	if i := strings.IndexByte(str, '('); i >= 0 && strings.HasSuffix(str, ")") {
		return str[i+1 : len(str)-1]
	}
	return str
}

func keyName(k Key) string {
	name := func(t tag.Tag) string {
		if info, ok := tag.Lookup(t); ok {
			return info.Name
		}
		return t.String()
	}
	if k.In != 0 {
		return name(k.In) + " > " + name(k.Tag)
	}
	return name(k.Tag)
}

func keyTag(k Key) string {
	if k.In != 0 {
		return k.In.String() + " > " + k.Tag.String()
	}
	return k.Tag.String()
}
