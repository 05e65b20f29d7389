package migrate

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Status is a migration as `pacsd migrate status` and the API describe
// it.
type Status struct {
	ID     string `json:"id"`
	Source string `json:"source"`
	Kind   string `json:"kind"`
	// State is "running", "waiting" (outside its window), "stopped" or
	// "finished".
	State   string    `json:"state"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
	Studies struct {
		Total    int `json:"total"`
		Pending  int `json:"pending"`
		Done     int `json:"done"`
		Verified int `json:"verified"`
		Failed   int `json:"failed"`
		Conflict int `json:"conflict"`
	} `json:"studies"`
	Instances int   `json:"instances"`
	Bytes     int64 `json:"bytes"`
	// The rates are over the last RateWindow; ETASeconds is 0 when it
	// cannot be told.
	BytesPerSecond float64 `json:"bytes_per_second"`
	StudiesPerHour float64 `json:"studies_per_hour"`
	ETASeconds     int64   `json:"eta_seconds"`
	Window         string  `json:"window"`
}

// RateWindow is the time over which Status gives rates.
const RateWindow = 10 * time.Minute

// Describe sums up migration m from st at time now.
func Describe(ctx context.Context, st interface {
	Totals(ctx context.Context, id string) (Totals, error)
	Progress(ctx context.Context, id string, since time.Time) (int, int64, error)
}, m *Migration, now time.Time) (*Status, error) {
	t, err := st.Totals(ctx, m.ID)
	if err != nil {
		return nil, err
	}
	s := &Status{ID: m.ID, Source: m.Source, Kind: m.Kind, Started: m.Started.UTC(), Updated: m.Heartbeat.UTC(), Window: m.Window}
	alive := m.Running && now.Sub(m.Heartbeat) < staleAfter
	switch {
	case alive && m.Waiting:
		s.State = "waiting"
	case alive:
		s.State = "running"
	case m.Finished:
		s.State = "finished"
	default:
		s.State = "stopped"
	}
	s.Studies.Total = t.Studies
	s.Studies.Pending, s.Studies.Done, s.Studies.Verified = t.ByState[Pending], t.ByState[Done], t.ByState[Verified]
	s.Studies.Failed, s.Studies.Conflict = t.ByState[Failed], t.ByState[Conflict]
	s.Instances, s.Bytes = t.InstancesHere, t.Bytes
	if alive {
		n, b, err := st.Progress(ctx, m.ID, now.Add(-RateWindow))
		if err != nil {
			return nil, err
		}
		span := min(RateWindow, now.Sub(m.Started))
		if span > 0 {
			s.BytesPerSecond = float64(b) / span.Seconds()
			s.StudiesPerHour = float64(n) / span.Hours()
		}
		if left := s.Studies.Pending + s.Studies.Done; n > 0 {
			s.ETASeconds = int64(float64(left) / float64(n) * span.Seconds())
		}
	}
	return s, nil
}

// WriteStatus writes s for a person to read.
func WriteStatus(w io.Writer, s *Status) error {
	_, err := fmt.Fprintf(w, `migration %s from %s (%s): %s
  started %s, last seen %s%s
  studies %d: %d verified, %d pending, %d done, %d failed, %d conflict
  instances %d, %.1f GB
`, s.ID, s.Source, s.Kind, s.State, s.Started.Format(time.RFC3339), s.Updated.Format(time.RFC3339), windowText(s.Window),
		s.Studies.Total, s.Studies.Verified, s.Studies.Pending, s.Studies.Done, s.Studies.Failed, s.Studies.Conflict,
		s.Instances, float64(s.Bytes)/1e9)
	if err == nil && (s.State == "running" || s.State == "waiting") {
		eta := "unknown"
		if s.ETASeconds > 0 {
			eta = (time.Duration(s.ETASeconds) * time.Second).String()
		}
		_, err = fmt.Fprintf(w, "  %.1f MB/s, %.0f studies/hour over the last %v, ETA %s\n", s.BytesPerSecond/1e6, s.StudiesPerHour, RateWindow, eta)
	}
	return err
}

func windowText(w string) string {
	if w == "" {
		return ""
	}
	return ", window " + w
}

// ReportRow is one study of the report.
type ReportRow struct {
	Source            string `json:"source"`
	StudyInstanceUID  string `json:"study"`
	PatientID         string `json:"patient_id"`
	PatientName       string `json:"patient_name"`
	StudyDate         string `json:"study_date"`
	Modalities        string `json:"modalities"`
	InstancesAtSource int    `json:"instances_source"`
	InstancesHere     int    `json:"instances_here"`
	State             string `json:"state"`
	Attempts          int    `json:"attempts"`
	LastError         string `json:"last_error"`
}

// RowOf is the report row of study s of the migration from source.
func RowOf(source string, s *Study) ReportRow {
	return ReportRow{Source: source, StudyInstanceUID: s.StudyInstanceUID, PatientID: s.PatientID, PatientName: s.PatientName,
		StudyDate: s.StudyDate, Modalities: s.Modalities, InstancesAtSource: s.InstancesAtSource, InstancesHere: s.InstancesHere,
		State: string(s.State), Attempts: s.Attempts, LastError: s.LastError}
}

// reportTotal sums one migration in the report.
type reportTotal struct {
	Source            string         `json:"source"`
	Studies           int            `json:"studies"`
	ByState           map[string]int `json:"by_state"`
	InstancesAtSource int            `json:"instances_source"`
	InstancesHere     int            `json:"instances_here"`
	Bytes             int64          `json:"bytes"`
}

// reportFile is a file an import did not take in.
type reportFile struct {
	Path   string `json:"path"`
	State  string `json:"state"`
	Reason string `json:"reason"`
}

// Report formats.
const (
	CSV  = "csv"
	JSON = "json"
)

// WriteReport writes the report of every migration and import in st, in
// format CSV or JSON: one row per study, then the totals of each
// migration, then the files imports did not take in. The CSV gives the
// three parts one after the other, each with its header line, apart by
// an empty line; the JSON is one object with "studies", "totals" and
// "files".
func WriteReport(ctx context.Context, w io.Writer, st State, format string) error {
	migs, err := st.Migrations(ctx)
	if err != nil {
		return err
	}
	switch format {
	case CSV:
		cw := csv.NewWriter(w)
		cw.Write([]string{"source", "study_instance_uid", "patient_id", "patient_name", "study_date", "modalities",
			"instances_source", "instances_here", "state", "attempts", "last_error"})
		for _, m := range migs {
			for s, err := range st.Studies(ctx, m.ID, StudyFilter{}) {
				if err != nil {
					return err
				}
				r := RowOf(m.Source, s)
				cw.Write([]string{r.Source, r.StudyInstanceUID, r.PatientID, r.PatientName, r.StudyDate, r.Modalities,
					strconv.Itoa(r.InstancesAtSource), strconv.Itoa(r.InstancesHere), r.State, strconv.Itoa(r.Attempts), r.LastError})
			}
		}
		cw.Flush()
		fmt.Fprintln(w)
		cw.Write([]string{"source", "studies", "pending", "done", "verified", "failed", "conflict", "instances_source", "instances_here", "bytes"})
		for _, m := range migs {
			t, err := st.Totals(ctx, m.ID)
			if err != nil {
				return err
			}
			row := []string{m.Source, strconv.Itoa(t.Studies)}
			for _, s := range StudyStates {
				row = append(row, strconv.Itoa(t.ByState[s]))
			}
			cw.Write(append(row, strconv.Itoa(t.InstancesAtSource), strconv.Itoa(t.InstancesHere), strconv.FormatInt(t.Bytes, 10)))
		}
		if files, err := notImported(ctx, st, migs); err != nil {
			return err
		} else if len(files) > 0 {
			cw.Flush()
			fmt.Fprintln(w)
			cw.Write([]string{"file", "state", "reason"})
			for _, f := range files {
				cw.Write([]string{f.Path, f.State, f.Reason})
			}
		}
		cw.Flush()
		return cw.Error()
	case JSON:
		out := struct {
			Studies []ReportRow   `json:"studies"`
			Totals  []reportTotal `json:"totals"`
			Files   []reportFile  `json:"files"`
		}{Studies: []ReportRow{}, Totals: []reportTotal{}, Files: []reportFile{}}
		for _, m := range migs {
			for s, err := range st.Studies(ctx, m.ID, StudyFilter{}) {
				if err != nil {
					return err
				}
				out.Studies = append(out.Studies, RowOf(m.Source, s))
			}
			t, err := st.Totals(ctx, m.ID)
			if err != nil {
				return err
			}
			rt := reportTotal{Source: m.Source, Studies: t.Studies, ByState: map[string]int{}, InstancesAtSource: t.InstancesAtSource, InstancesHere: t.InstancesHere, Bytes: t.Bytes}
			for _, s := range StudyStates {
				rt.ByState[string(s)] = t.ByState[s]
			}
			out.Totals = append(out.Totals, rt)
		}
		files, err := notImported(ctx, st, migs)
		if err != nil {
			return err
		}
		out.Files = append(out.Files, files...)
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	return fmt.Errorf("migrate: report format %q is not csv or json", format)
}

// notImported lists the files imports rejected, failed or found in
// conflict.
func notImported(ctx context.Context, st State, migs []*Migration) ([]reportFile, error) {
	var out []reportFile
	for _, m := range migs {
		if m.Kind != KindImport {
			continue
		}
		for f, err := range st.Files(ctx, m.ID, FileRejected, FileFailed, FileConflict) {
			if err != nil {
				return nil, err
			}
			out = append(out, reportFile{Path: f.Path, State: string(f.State), Reason: f.Reason})
		}
	}
	return out, nil
}
