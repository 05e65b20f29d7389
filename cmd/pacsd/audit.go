package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/labstack/echo/v4"

	auditlog "github.com/pacsd/pacsd/audit"
)

// auditSettings say where the audit trail goes.
type auditSettings struct {
	AuditDir string `name:"audit-dir" placeholder:"DIR" help:"directory of the audit journal (default DATA/audit)"`
	// AuditOff is for measuring what the trail costs, and for test
	// systems; serve warns of it at start.
	AuditOff    bool   `name:"audit-off" help:"run without the audit trail: nothing is recorded (for measuring its cost, or a test system; pacsd warns at start)"`
	AuditSyslog string `name:"audit-syslog" placeholder:"URL" help:"also send each audit message to a syslog collector over TLS (RFC 5425): tls://HOST:6514; pacsd presents --tls-cert and verifies the collector against --tls-ca"`
}

// completeAudit fills in the journal's directory, under the data
// directory by default.
func (a *auditSettings) completeAudit(data string) error {
	if a.AuditDir == "" {
		a.AuditDir = filepath.Join(data, "audit")
	}
	if a.AuditSyslog != "" && !strings.HasPrefix(a.AuditSyslog, "tls://") {
		return fmt.Errorf("audit_syslog %q: want tls://HOST:PORT: audit messages name patients and do not cross a network in clear", a.AuditSyslog)
	}
	return nil
}

// journalName names an audit journal in the index, which the nodes that
// share it keep the heads of their own journals in: by host and
// directory, as serve and audit verify on that host both find it.
func journalName(dir string) string {
	host, _ := os.Hostname()
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return host + ":" + dir
}

// auditTrail is what serve records the audit trail with: the journal, the
// syslog sender if any, and the Trail the services call.
type auditTrail struct {
	journal *auditlog.Journal
	syslog  *auditlog.Syslog
	trail   *auditlog.Trail
}

// openAudit opens the journal (and the syslog sender) for serve. heads
// keeps the journal's latest hash apart from it: the index, so that
// removing the last records is detected too. clientTLS is the
// configuration pacsd calls other nodes with.
func openAudit(ctx context.Context, a *auditSettings, heads auditlog.HeadStore, aeTitle string, clientTLS *tls.Config, log *slog.Logger) (*auditTrail, error) {
	at := &auditTrail{}
	if a.AuditOff {
		log.Warn("the audit trail is off (--audit-off): nothing pacsd does is recorded")
		return at, nil
	}
	opts := auditlog.Options{Heads: heads, Source: aeTitle, Logger: log.With("component", "audit")}
	if a.AuditSyslog != "" {
		s, err := auditlog.NewSyslog(auditlog.SyslogConfig{URL: a.AuditSyslog, TLS: clientTLS, Logger: log.With("component", "syslog")})
		if err != nil {
			return nil, err
		}
		at.syslog = s
		opts.Forward = s.Send
	}
	j, err := auditlog.Open(ctx, a.AuditDir, opts)
	if err != nil {
		if at.syslog != nil {
			at.syslog.Close(ctx)
		}
		return nil, err
	}
	at.journal = j
	host, _ := os.Hostname()
	at.trail = &auditlog.Trail{Record: j.Log, App: auditlog.Application(aeTitle, host)}
	return at, nil
}

// journalCloseTimeout bounds the writing of the journal's last records
// at shutdown, which the shutdown timeout may have used up by then.
const journalCloseTimeout = 3 * time.Second

// close records pacsd stopping (with why, if it failed), then closes the
// journal, which writes what is queued even past ctx's end (a few local
// writes), and the syslog sender, which sends what it can within ctx.
func (at *auditTrail) close(ctx context.Context, stopErr error) error {
	if at.journal == nil {
		return nil // --audit-off
	}
	at.trail.Stopped(stopErr)
	jctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), journalCloseTimeout)
	defer cancel()
	err := at.journal.Close(jctx)
	if at.syslog != nil {
		err = errors.Join(err, at.syslog.Close(ctx))
	}
	return err
}

// auditCommand queries the audit trail; audit verify checks its chain.
// Both read the journal while pacsd serve writes it.
type auditCommand struct {
	Search auditSearchCommand `cmd:"" default:"withargs" help:"List the audit records about a patient, a study or a user (the default)."`
	Verify auditVerifyCommand `cmd:"" help:"Check the audit journal's hash chain; exit 1 on any break."`
}

// auditSearchCommand lists audit records.
type auditSearchCommand struct {
	baseSettings
	storeSettings
	auditSettings
	Study   string `config:"-" placeholder:"UID" help:"records about this Study Instance UID"`
	Patient string `config:"-" placeholder:"ID" help:"records about this Patient ID"`
	User    string `config:"-" placeholder:"USER" help:"records of this user or AE title"`
	Since   string `config:"-" placeholder:"TIME" help:"records from this time on: RFC 3339 (2026-03-01T09:00:00Z), a date (2026-03-01) or a duration back from now (24h)"`
	XML     bool   `config:"-" name:"xml" help:"print each record's audit message (XML), one a line"`
}

func (c *auditSearchCommand) Run(ctx context.Context, p *process) error {
	if err := complete(&c.storeSettings); err != nil {
		return err
	}
	if err := c.completeAudit(c.Data); err != nil {
		return err
	}
	f := auditlog.Filter{Study: c.Study, Patient: c.Patient, User: c.User}
	if c.Since != "" {
		t, err := parseSince(c.Since, time.Now())
		if err != nil {
			return &usageError{err, "pacsd audit -h"}
		}
		f.Since = t
	}
	if _, err := os.Stat(c.AuditDir); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	tw := tabwriter.NewWriter(p.stdout, 0, 4, 2, ' ', 0)
	if !c.XML {
		fmt.Fprintln(tw, "SEQ\tTIME\tEVENT\tACTION\tOUTCOME\tUSERS\tPATIENTS\tSTUDIES")
	}
	for r, err := range auditlog.Search(ctx, c.AuditDir, f) {
		if err != nil {
			tw.Flush()
			return err
		}
		if c.XML {
			fmt.Fprintln(p.stdout, r.XML)
			continue
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, r.Time.UTC().Format(time.RFC3339), eventName(r.Event), orDash(r.Action), r.Outcome,
			orDash(strings.Join(r.Users, ",")), orDash(strings.Join(r.Patients, ",")), orDash(strings.Join(r.Studies, ",")))
	}
	return tw.Flush()
}

// eventName is the meaning of an event ID the journal records, in one
// word for a column.
func eventName(code string) string {
	for _, c := range []auditlog.Code{auditlog.EventApplicationActivity, auditlog.EventBeginTransferring, auditlog.EventInstancesAccessed,
		auditlog.EventInstancesTransferred, auditlog.EventStudyDeleted, auditlog.EventQuery, auditlog.EventSecurityAlert, auditlog.EventUserAuthentication} {
		if c.Code == code {
			return strings.ReplaceAll(c.Meaning, " ", "-")
		}
	}
	return code
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// parseSince reads --since and since=: an RFC 3339 time, a date (UTC
// midnight) or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("since %q: want an RFC 3339 time (2026-03-01T09:00:00Z), a date (2026-03-01) or a duration (24h)", s)
}

// auditVerifyCommand checks the audit journal's chain.
type auditVerifyCommand struct {
	baseSettings
	storeSettings
	auditSettings
}

func (c *auditVerifyCommand) Run(ctx context.Context, p *process) error {
	if err := complete(&c.storeSettings); err != nil {
		return err
	}
	if err := c.completeAudit(c.Data); err != nil {
		return err
	}
	if _, err := os.Stat(c.AuditDir); err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	// The head is read before the journal: a serve writing meanwhile
	// saves a head only once the records up to it are synced.
	db, err := openIndex(ctx, c.Index)
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	head, err := db.AuditHead(journalName(c.AuditDir)).LoadHead(ctx)
	db.Close()
	if err != nil {
		return fmt.Errorf("audit verify: head: %w", err)
	}
	rep, err := auditlog.Verify(ctx, c.AuditDir, &head)
	if err != nil {
		return fmt.Errorf("audit verify: %s: %w", c.AuditDir, err)
	}
	_, err = fmt.Fprintf(p.stdout, "audit journal %s: %d records in %d files, chain intact; head %s\n", c.AuditDir, rep.Records, rep.Files, rep.Head)
	return err
}

// auditAPIPath is the HTTP API of the audit trail (admin scope).
const auditAPIPath = "/api/audit"

// Pages of GET /api/audit: records per page by default, and at most.
const (
	defaultAuditPage = 100
	maxAuditPage     = 1000
)

// auditRecord is a record as GET /api/audit returns it (docs/api.md).
type auditRecord struct {
	Seq     uint64      `json:"seq"`
	Time    time.Time   `json:"time"`
	Event   string      `json:"event"`
	Action  string      `json:"action,omitempty"`
	Outcome int         `json:"outcome"`
	User    string      `json:"user"`
	Source  auditSource `json:"source"`
	Patient string      `json:"patient,omitempty"`
	Study   string      `json:"study,omitempty"`
	Detail  string      `json:"detail,omitempty"`
}

type auditSource struct {
	AE      string `json:"ae,omitempty"`
	Address string `json:"address,omitempty"`
}

// auditPage is the answer of GET /api/audit.
type auditPage struct {
	Records []auditRecord `json:"records"`
	// Next, passed back as before, asks for the page of older records;
	// empty when there are none.
	Next string `json:"next,omitempty"`
}

// auditCursor encodes the cursor of the records before seq.
func auditCursor(seq uint64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("seq:" + strconv.FormatUint(seq, 10)))
}

func parseAuditCursor(s string) (uint64, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		if n, ok := strings.CutPrefix(string(b), "seq:"); ok {
			return strconv.ParseUint(n, 10, 64)
		}
	}
	return 0, errors.New("not a cursor of this endpoint")
}

// registerAuditAPI serves GET /api/audit?patient=&study=&user=&since=&before=&limit=
// from the journal in dir, whose audit source is source: the matching
// records, newest first, limit (default 100, at most 1000) at a time, as
// docs/api.md describes. The journal is read from the start for each
// page, holding no more than a page in memory.
func registerAuditAPI(e *echo.Echo, dir, source string) {
	e.GET(auditAPIPath, func(c echo.Context) error {
		bad := func(format string, args ...any) error {
			return c.JSON(http.StatusBadRequest, map[string]string{"error": fmt.Sprintf(format, args...)})
		}
		q := c.QueryParams()
		f := auditlog.Filter{Patient: q.Get("patient"), Study: q.Get("study"), User: q.Get("user")}
		if s := q.Get("since"); s != "" {
			t, err := parseSince(s, time.Now())
			if err != nil {
				return bad("%v", err)
			}
			f.Since = t
		}
		limit := defaultAuditPage
		if s := q.Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > maxAuditPage {
				return bad("limit: want 1 to %d", maxAuditPage)
			}
			limit = n
		}
		before := uint64(math.MaxUint64)
		if s := q.Get("before"); s != "" {
			n, err := parseAuditCursor(s)
			if err != nil {
				return bad("before: %v", err)
			}
			before = n
		}
		// The newest limit+1 records before the cursor: one more than a
		// page says whether there are older ones.
		var window []auditlog.Record
		for r, err := range auditlog.Search(c.Request().Context(), dir, f) {
			if err != nil {
				return c.JSON(http.StatusInternalServerError, map[string]string{"error": "audit journal: " + err.Error()})
			}
			if r.Seq >= before {
				break
			}
			if window = append(window, r); len(window) > limit+1 {
				window = window[1:]
			}
		}
		page := auditPage{Records: []auditRecord{}}
		if len(window) > limit {
			window = window[1:]
			page.Next = auditCursor(window[0].Seq)
		}
		for i := len(window) - 1; i >= 0; i-- {
			r := window[i]
			sum, err := r.Summary(source)
			if err != nil {
				return c.JSON(http.StatusInternalServerError, map[string]string{"error": err.Error()})
			}
			out := auditRecord{Seq: r.Seq, Time: r.Time.UTC(), Event: sum.Event, Action: r.Action, User: sum.User,
				Source: auditSource{AE: sum.AE, Address: sum.Address}, Detail: sum.Detail}
			out.Outcome, _ = strconv.Atoi(r.Outcome)
			if len(r.Patients) > 0 {
				out.Patient = r.Patients[0]
			}
			if len(r.Studies) > 0 {
				out.Study = r.Studies[0]
			}
			page.Records = append(page.Records, out)
		}
		c.Response().Header().Set("Cache-Control", "no-store")
		return c.JSON(http.StatusOK, page)
	})
}
