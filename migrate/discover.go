package migrate

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pacsd/pacsd/dicom/tag"
)

// Discovery finds every study of a source in a Study Date range, whatever
// cap the source puts on the matches of one query.
//
// Legacy archives cap C-FIND answers (500, 1,000, 50,000 matches) and do
// not all say so: Orthanc ends a capped answer with Cancel (0xFE00),
// others with a warning or a failure, and some stop at the limit with
// Success. Discovery takes an answer as capped when the source says so or
// when it holds a round number of matches (100, 250, 500, 1000, …). The
// first answer is checked against two parts of its dates: if one finds a
// study the whole did not, the source caps silently, and any answer of as
// many matches is taken as capped too. A capped query is split: the date range in halves down to single days;
// a day by time of day, in halves down to a minute, plus the studies of
// that day without a time; such a part by each modality; and that by the
// first letter of the patient's name. The answers of capped queries are
// dropped, since their parts find the same studies; a part that is still
// capped when nothing is left to split keeps what it found, and the
// discovery reports it as incomplete.
//
// Without a date range, the first query asks for all studies; if it is
// capped, the dates from 0001 to 9999 are split, and a last query finds
// the studies without a Study Date.
type Discovery struct {
	Source Source
	// Since and Until bound the Study Date (YYYYMMDD); empty is open.
	Since, Until string
	// Keys are matched by every query (--filter).
	Keys []Key
	// Found receives the studies of each complete answer.
	Found func(ctx context.Context, studies []*Study) error
	// Queried, if set, is told of each query and its answer, for logs.
	Queried func(q Query, a Answer)

	// silentCap is the number of matches at which the source was found
	// to stop without saying so; 0 if it was not.
	silentCap int
	// firstFailed is why the first query failed, if it did.
	firstFailed string
}

// DiscoveryResult sums up a discovery.
type DiscoveryResult struct {
	// Queries is the number of queries sent; Found the number of
	// matches passed on (a study found by two parts counts twice).
	Queries, Found int
	// Incomplete lists the parts still capped after every split.
	Incomplete []string
}

// The widest Study Date range, for an open one.
const (
	firstDate = "00010101"
	lastDate  = "99991231"
)

// modalities are the Modalities in Study a capped part is split by: the
// defined terms of PS3.3 C.7.3.1.1.1 in use.
var modalities = []string{
	"AR", "ASMT", "AU", "BDUS", "BI", "BMD", "CR", "CT", "CTPROTOCOL", "DG", "DOC", "DX", "ECG", "EPS", "ES", "FID",
	"GM", "HC", "HD", "IO", "IOL", "IVOCT", "IVUS", "KER", "KO", "LEN", "LS", "MG", "MR", "M3D", "NM", "OAM", "OCT",
	"OP", "OPM", "OPT", "OPTBSV", "OPTENF", "OPV", "OSS", "OT", "PLAN", "PR", "PT", "PX", "REG", "RESP", "RF", "RG",
	"RTDOSE", "RTIMAGE", "RTINTENT", "RTPLAN", "RTRAD", "RTRECORD", "RTSEGANN", "RTSTRUCT", "RWV", "SEG", "SM", "SMR",
	"SR", "SRF", "STAIN", "TEXTUREMAP", "TG", "US", "VA", "XA", "XAPROTOCOL", "XC",
}

// initials are the first characters a capped part is split by, in
// patient names.
var initials = strings.Split("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", "")

// minTimeSpan is the narrowest Study Time range a day is split into.
const minTimeSpan = 60 // seconds

// Run discovers the studies.
func (d *Discovery) Run(ctx context.Context) (DiscoveryResult, error) {
	var res DiscoveryResult
	open := d.Since == "" && d.Until == ""
	q := Query{Keys: d.Keys, DateFrom: d.Since, DateTo: d.Until}
	if !open {
		if q.DateFrom == "" {
			q.DateFrom = firstDate
		}
		if q.DateTo == "" {
			q.DateTo = lastDate
		}
	}
	whole := q
	if open {
		whole.DateFrom, whole.DateTo = firstDate, lastDate
	}
	found, capped, err := d.query(ctx, q, &res)
	if err != nil {
		return res, err
	}
	if capped && len(found) == 0 && d.firstFailed != "" {
		// A source that fails its first query is not capped: it
		// cannot answer.
		return res, fmt.Errorf("migrate: discovery, %s: %s", q, d.firstFailed)
	}
	if !capped && len(found) > 0 && whole.DateFrom != whole.DateTo {
		// A source may cap its answers without a sign, at any number
		// (Orthanc's QIDO-RS at LimitFindResults+1). Its halves then
		// find more than the whole did: the whole was capped, and so is
		// any answer of as many matches.
		if capped, err = d.probe(ctx, whole, found, &res); err != nil {
			return res, err
		}
	}
	if !capped {
		return res, nil
	}
	q = whole
	if err := d.split(ctx, q, &res); err != nil {
		return res, err
	}
	if open {
		if err := d.run(ctx, Query{Keys: d.Keys, EmptyDate: true}, &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// probe tells whether the answer of q, found, is capped: it queries q's
// dates in two parts, split at the median date found, and takes the
// answer as capped if a part finds a study the whole did not.
func (d *Discovery) probe(ctx context.Context, q Query, found []*Study, res *DiscoveryResult) (bool, error) {
	var dates []string
	known := map[string]bool{}
	for _, s := range found {
		known[s.StudyInstanceUID] = true
		if s.StudyDate >= q.DateFrom && s.StudyDate <= q.DateTo {
			dates = append(dates, s.StudyDate)
		}
	}
	slices.Sort(dates)
	mid := q.DateTo
	if len(dates) > 0 {
		mid = dates[len(dates)/2]
	}
	if mid == q.DateTo {
		mid = addDays(mid, -1)
	}
	if mid < q.DateFrom {
		return false, nil
	}
	a, b := q, q
	a.DateTo, b.DateFrom = mid, addDays(mid, 1)
	for _, p := range []Query{a, b} {
		ans, err := d.Source.FindStudies(ctx, p)
		res.Queries++
		if err != nil {
			return false, fmt.Errorf("migrate: discovery, %s: %w", p, err)
		}
		for _, s := range ans.Studies {
			if !known[s.StudyInstanceUID] {
				d.silentCap = len(found)
				return true, nil
			}
		}
	}
	return false, nil
}

// addDays returns the date n days after YYYYMMDD.
func addDays(date string, n int) string {
	t, err := time.Parse("20060102", date)
	if err != nil {
		return date
	}
	return t.AddDate(0, 0, n).Format("20060102")
}

// run queries q and splits it if it is capped.
func (d *Discovery) run(ctx context.Context, q Query, res *DiscoveryResult) error {
	_, capped, err := d.query(ctx, q, res)
	if err != nil || !capped {
		return err
	}
	return d.split(ctx, q, res)
}

// query sends q and passes on its studies unless it is capped and can be
// split. It returns the matches.
func (d *Discovery) query(ctx context.Context, q Query, res *DiscoveryResult) (found []*Study, capped bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	a, err := d.Source.FindStudies(ctx, q)
	res.Queries++
	if err != nil {
		return nil, false, fmt.Errorf("migrate: discovery, %s: %w", q, err)
	}
	// Empty Value Matching is recent; a source that ignores it matches
	// every date, and the studies that have one are not this part's.
	if q.EmptyDate || q.EmptyTime {
		kept := a.Studies[:0]
		for _, s := range a.Studies {
			if (!q.EmptyDate || s.StudyDate == "") && (!q.EmptyTime || s.StudyTime == "") {
				kept = append(kept, s)
			}
		}
		a.Studies = kept
	}
	switch {
	case a.Capped:
	case d.silentCap > 0 && len(a.Studies) >= d.silentCap:
		a.Capped, a.Reason = true, fmt.Sprintf("%d matches, as many as the source was seen to stop at", len(a.Studies))
	case roundLimit(len(a.Studies)):
		a.Capped, a.Reason = true, fmt.Sprintf("%d matches, a round number a source would cap at", len(a.Studies))
	}
	if d.Queried != nil {
		d.Queried(q, a)
	}
	if a.Failed && res.Queries == 1 {
		d.firstFailed = a.Reason
	}
	if a.Capped && splittable(q) {
		return a.Studies, true, nil
	}
	if a.Capped {
		res.Incomplete = append(res.Incomplete, fmt.Sprintf("%s (%s)", q, a.Reason))
	}
	res.Found += len(a.Studies)
	if len(a.Studies) > 0 && d.Found != nil {
		if err := d.Found(ctx, a.Studies); err != nil {
			return nil, false, err
		}
	}
	return a.Studies, false, nil
}

// splittable reports whether a capped q can be split further.
func splittable(q Query) bool { return len(parts(q)) > 0 }

// split runs the parts of a capped q.
func (d *Discovery) split(ctx context.Context, q Query, res *DiscoveryResult) error {
	for _, p := range parts(q) {
		if err := d.run(ctx, p, res); err != nil {
			return err
		}
	}
	return nil
}

// parts splits q along the first dimension left: date, time, modality,
// patient name initial; a dimension a --filter key fixes is left out.
func parts(q Query) []Query {
	switch {
	case !q.EmptyDate && q.DateFrom != q.DateTo:
		from, _ := time.Parse("20060102", q.DateFrom)
		to, _ := time.Parse("20060102", q.DateTo)
		mid := from.AddDate(0, 0, int(to.Sub(from).Hours()/24)/2)
		a, b := q, q
		a.DateTo = mid.Format("20060102")
		b.DateFrom = mid.AddDate(0, 0, 1).Format("20060102")
		return []Query{a, b}
	case !q.EmptyTime && q.Modality == "" && q.TimeFrom == "" && !q.EmptyDate && !q.hasKey(tag.StudyTime):
		// A whole day: its times, and the studies without one.
		a, b, none := q, q, q
		a.TimeFrom, a.TimeTo = "000000", "115959"
		b.TimeFrom, b.TimeTo = "120000", "235959"
		none.EmptyTime = true
		return []Query{a, b, none}
	case q.TimeFrom != "" && q.Modality == "" && seconds(q.TimeTo)-seconds(q.TimeFrom)+1 > minTimeSpan:
		from, to := seconds(q.TimeFrom), seconds(q.TimeTo)
		mid := from + (to-from+1)/2
		a, b := q, q
		a.TimeTo = clock(mid - 1)
		b.TimeFrom = clock(mid)
		return []Query{a, b}
	case q.Modality == "" && !q.hasKey(tag.ModalitiesInStudy):
		out := make([]Query, len(modalities))
		for i, m := range modalities {
			out[i] = q
			out[i].Modality = m
		}
		return out
	case q.NameInitial == "" && !q.hasKey(tag.PatientName):
		out := make([]Query, len(initials))
		for i, c := range initials {
			out[i] = q
			out[i].NameInitial = c
		}
		return out
	}
	return nil // nothing left to split by
}

// seconds reads HHMMSS as seconds since midnight.
func seconds(hhmmss string) int {
	n, _ := strconv.Atoi(hhmmss)
	return n/10000*3600 + n/100%100*60 + n%100
}

// clock writes seconds since midnight as HHMMSS.
func clock(s int) string { return fmt.Sprintf("%02d%02d%02d", s/3600, s/60%60, s%60) }

// roundLimit reports whether n looks like a configured cap: 50, 100,
// 200, 250, 500, 1000 and so on.
func roundLimit(n int) bool {
	if n < 50 {
		return false
	}
	for n%10 == 0 {
		n /= 10
	}
	return n == 1 || n == 2 || n == 25 || n == 5
}
