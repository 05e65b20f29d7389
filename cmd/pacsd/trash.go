package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pacsd/pacsd/archive"
	auditlog "github.com/pacsd/pacsd/audit"
	"github.com/pacsd/pacsd/auth"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/retention"
)

// trashSettings say how long deleted instances stay in the trash and
// what a rejection note does with the instances it names.
type trashSettings struct {
	TrashDays       int    `name:"trash-days" default:"7" placeholder:"DAYS" help:"days deleted instances stay in the trash, from which pacsd restore brings them back, before serve purges them"`
	RejectionPolicy string `name:"rejection-policy" default:"hide" enum:"hide,trash" placeholder:"POLICY" help:"what an IHE IOCM rejection note does with the instances it names: hide (for good, never purged) or trash (purged with the trash)"`
}

func (t *trashSettings) complete() error {
	if t.TrashDays < 0 {
		return fmt.Errorf("trash_days: %d is negative", t.TrashDays)
	}
	if t.RejectionPolicy != "hide" && t.RejectionPolicy != "trash" {
		return fmt.Errorf("rejection_policy: %q is neither hide nor trash", t.RejectionPolicy)
	}
	return nil
}

// trashAge is how long an instance stays in the trash.
func (t *trashSettings) trashAge() time.Duration { return time.Duration(t.TrashDays) * 24 * time.Hour }

// purgeInterval is how often serve purges what has been in the trash
// longer than --trash-days.
const purgeInterval = time.Hour

// runPurges purges the trash of what is older than age, at once and then
// every purgeInterval, until ctx ends.
func runPurges(ctx context.Context, t *archive.Trash, age time.Duration, log *slog.Logger) {
	tick := time.NewTicker(purgeInterval)
	defer tick.Stop()
	for {
		if _, err := t.Purge(ctx, time.Now().Add(-age), "pacsd"); err != nil && ctx.Err() == nil {
			log.Error("purging the trash failed; trying again later", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// removalAuditInterval is how often serve writes new entries of the
// removal log to the audit trail.
const removalAuditInterval = 2 * time.Second

// removalEvents is the removal log as serve audits it.
type removalEvents interface {
	Unaudited(ctx context.Context, limit int) ([]index.Event, error)
	MarkAudited(ctx context.Context, ids []int64) error
}

// runRemovalAudit writes every entry of the removal log to the audit
// trail, whichever process made it (serve's DELETE and rejection notes,
// or the delete, restore, purge and retention commands run beside it),
// until ctx ends.
func runRemovalAudit(ctx context.Context, events removalEvents, trail *auditlog.Trail, log *slog.Logger) {
	drainToAudit(ctx, "removal log", events.Unaudited, events.MarkAudited,
		func(e index.Event) int64 { auditRemoval(trail, e); return e.ID }, log)
}

// drainToAudit writes what unaudited returns to the audit trail with
// audit, which returns the entry's id, and marks those ids audited: in
// batches until none is left, then again every removalAuditInterval,
// until ctx ends. Two nodes may both write an entry before either marks
// it: at least once.
func drainToAudit[T any](ctx context.Context, what string, unaudited func(context.Context, int) ([]T, error),
	mark func(context.Context, []int64) error, audit func(T) int64, log *slog.Logger) {
	const batch = 100
	tick := time.NewTicker(removalAuditInterval)
	defer tick.Stop()
	for {
		for {
			entries, err := unaudited(ctx, batch)
			if err != nil {
				if ctx.Err() == nil {
					log.Error("reading the "+what+" for the audit trail failed", "err", err)
				}
				break
			}
			ids := make([]int64, len(entries))
			for i, e := range entries {
				ids[i] = audit(e)
			}
			if len(ids) > 0 {
				if err := mark(ctx, ids); err != nil {
					if ctx.Err() == nil {
						log.Error("marking the "+what+" audited failed", "err", err)
					}
					break
				}
			}
			if len(entries) < batch {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// auditRemoval records one entry of the removal log: a DICOM Study
// Deleted event for a deletion, expiry, rejection or purge, an Instances
// Accessed (Update) event for a restore.
func auditRemoval(trail *auditlog.Trail, e index.Event) {
	who := auditlog.Actor{User: e.Principal}
	patient := auditlog.Patient{ID: e.PatientID, Issuer: e.IssuerOfPatientID, Name: e.PatientName}
	var studies []auditlog.Study
	if e.StudyInstanceUID != "" {
		studies = []auditlog.Study{{UID: e.StudyInstanceUID}}
	}
	if e.Action == index.ActionRestore {
		trail.Corrected(who, nil, patient, studies...)
		return
	}
	whole := e.SeriesInstanceUID == "" && e.SOPInstanceUID == "" && e.Action != index.ActionReject
	trail.Deleted(who, whole, nil, patient, studies...)
}

// cliPrincipal names who runs a command, for the removal log.
func cliPrincipal(p *process) string {
	if u := p.getenv("USER"); u != "" {
		return u
	}
	return "pacsd"
}

// deleteCommand moves a study, series or instance to the trash. It works
// on the index while pacsd serve runs, which stops showing them at once.
type deleteCommand struct {
	maintenanceSettings
	Study    string `config:"-" required:"" placeholder:"UID" help:"the Study Instance UID"`
	Series   string `config:"-" placeholder:"UID" help:"only this series of the study"`
	Instance string `config:"-" placeholder:"UID" help:"only this instance of the series"`
	Reason   string `config:"-" required:"" placeholder:"TEXT" help:"why, for the log of deletions"`
}

func (c *deleteCommand) Run(ctx context.Context, p *process) error {
	if c.Instance != "" && c.Series == "" {
		return &usageError{err: errors.New("--instance needs --series"), help: "pacsd delete -h"}
	}
	o, err := c.openRecords(ctx, p)
	if err != nil {
		return err
	}
	defer o.close()
	removed, err := o.trash.Delete(ctx, index.Removal{
		Selection: index.Selection{StudyInstanceUID: c.Study, SeriesInstanceUID: c.Series, SOPInstanceUID: c.Instance},
		Cause:     index.CauseDeleted, Reason: c.Reason, Principal: cliPrincipal(p),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(p.stdout, "moved %d instances to the trash\n", len(removed))
	return nil
}

// restoreCommand brings back what a study has in the trash.
type restoreCommand struct {
	maintenanceSettings
	Study  string `config:"-" required:"" placeholder:"UID" help:"the Study Instance UID"`
	Reason string `config:"-" default:"restored from the trash" placeholder:"TEXT" help:"why, for the log of deletions"`
}

func (c *restoreCommand) Run(ctx context.Context, p *process) error {
	o, err := c.openRecords(ctx, p)
	if err != nil {
		return err
	}
	defer o.close()
	restored, err := o.trash.Restore(ctx, c.Study, c.Reason, cliPrincipal(p))
	fmt.Fprintf(p.stdout, "restored %d instances\n", len(restored))
	return err
}

// openRecords opens the storage, for the records of deletions and
// restores (see archive.Trash), and the index.
func (m *maintenanceSettings) openRecords(ctx context.Context, p *process) (*recordsOpened, error) {
	if err := complete(&m.storeSettings); err != nil {
		return nil, err
	}
	return openJournal(ctx, &m.baseSettings, &m.storeSettings, p)
}

// purgeCommand empties the whole trash now, whatever its age: the
// objects are deleted from storage for good.
type purgeCommand struct {
	maintenanceSettings
}

func (c *purgeCommand) Run(ctx context.Context, p *process) error {
	store, db, done, err := c.openFor(ctx, p, true)
	if err != nil {
		return err
	}
	defer done()
	t := &archive.Trash{Store: store, Index: db}
	start := time.Now()
	res, err := t.Purge(ctx, start, cliPrincipal(p))
	fmt.Fprintf(p.stdout, "purged %d objects (%.1f MiB) in %v\n", res.Objects, float64(res.Bytes)/(1<<20), time.Since(start).Round(time.Millisecond))
	return err
}

// removalLog is the log of deletions, restores, purges, rejections and
// expiries in the index.
type removalLog interface {
	Events(ctx context.Context, study string) ([]index.Event, error)
}

// registerDeletionsAPI serves GET /api/deletions?study=UID: the log of
// deletions, restores, purges, rejections and expiries, oldest first, as
// JSON objects with id, action, study, series, instance, instances,
// reason, principal and time.
func registerDeletionsAPI(e *echo.Echo, log removalLog) {
	e.GET("/api/deletions", func(c echo.Context) error {
		events, err := log.Events(c.Request().Context(), c.QueryParam("study"))
		if err != nil {
			return err
		}
		if events == nil {
			events = []index.Event{}
		}
		return c.JSON(http.StatusOK, events)
	})
}

// restorer brings back what a study has in the trash.
type restorer interface {
	Restore(ctx context.Context, study, reason, principal string) ([]index.Instance, error)
}

// registerRestoreAPI serves POST /api/studies/{study}/restore: what of
// the study is still in the trash comes back, as pacsd restore --study
// does. 204; 404 when nothing of it is in the trash. The optional reason
// parameter goes to the log of deletions.
func registerRestoreAPI(e *echo.Echo, t restorer) {
	e.POST("/api/studies/:study/restore", func(c echo.Context) error {
		ctx := c.Request().Context()
		principal := "anonymous"
		if p, ok := auth.FromContext(ctx); ok {
			principal = p.Name
		}
		reason := c.QueryParam("reason")
		if reason == "" {
			reason = "restored through the web interface or API"
		}
		_, err := t.Restore(ctx, c.Param("study"), reason, principal)
		switch {
		case errors.Is(err, index.ErrNotFound):
			return echo.NewHTTPError(http.StatusNotFound, "nothing of the study is in the trash")
		case err != nil:
			return err
		}
		return c.NoContent(http.StatusNoContent)
	})
}

// retentionCommand lists the studies whose retention has run out under
// the configuration's retention rules, or moves them to the trash.
type retentionCommand struct {
	maintenanceSettings
	Rules  []retention.Rule `kong:"-" config:"retention" help:"retention rules, a JSON list: [{\"when\": {\"Modality\": \"MG\"}, \"keep\": \"8y\", \"from\": \"StudyDate\"}, {\"when\": {\"age_at_study_under\": \"18y\"}, \"keep_until_age\": \"25y\"}]; nothing expires without a rule"`
	DryRun bool             `config:"-" name:"dry-run" help:"list what would expire, change nothing (the default)"`
	Apply  bool             `config:"-" help:"move what has expired to the trash"`
	Now    string           `config:"-" placeholder:"YYYYMMDD" help:"decide as of this date rather than today, to see what will expire then"`
}

func (c *retentionCommand) Run(ctx context.Context, p *process) error {
	if c.DryRun && c.Apply {
		return &usageError{err: errors.New("--dry-run and --apply exclude each other"), help: "pacsd retention -h"}
	}
	for i, r := range c.Rules {
		if err := r.Check(); err != nil {
			return fmt.Errorf("retention rule %d: %w", i+1, err)
		}
	}
	now := time.Now()
	if c.Now != "" {
		t, err := time.Parse("20060102", c.Now)
		if err != nil {
			return &usageError{err: fmt.Errorf("--now %q: want YYYYMMDD", c.Now), help: "pacsd retention -h"}
		}
		now = t
	}
	o, err := c.openRecords(ctx, p)
	if err != nil {
		return err
	}
	defer o.close()
	due, err := retention.Due(ctx, o.db, c.Rules, now)
	if err != nil {
		return err
	}
	t := o.trash
	moved := 0
	for _, e := range due {
		fmt.Fprintf(p.stdout, "%s patient=%s study_date=%s expired=%s %s\n", e.StudyInstanceUID, e.PatientID, e.StudyDate,
			e.Until.Format("2006-01-02"), e.Rule)
		if !c.Apply {
			continue
		}
		removed, err := t.Delete(ctx, index.Removal{Selection: index.Selection{StudyInstanceUID: e.StudyInstanceUID},
			Cause: index.CauseExpired, Reason: e.Rule.String(), Principal: cliPrincipal(p)})
		if err != nil && !errors.Is(err, index.ErrNotFound) {
			return err
		}
		moved += len(removed)
	}
	if c.Apply {
		fmt.Fprintf(p.stdout, "%d studies expired: %d instances moved to the trash\n", len(due), moved)
	} else {
		fmt.Fprintf(p.stdout, "%d studies expired (dry run: nothing changed)\n", len(due))
	}
	return nil
}
