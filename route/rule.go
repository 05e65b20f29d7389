package route

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
)

// ErrConfig reports routes that cannot be used as configured; the
// wrapping error says which and why.
var ErrConfig = errors.New("route: invalid configuration")

// Spec is one route as the config file's "routes" holds it:
//
//	{"name": "ct-to-reporting",
//	 "when": {"calling_ae": "CT01|CT02", "Modality": "CT|MR", "StudyDescription": "(?i)head"},
//	 "to": ["REPORTING", "TRUSTB_WEB"], "delay": "30s", "window": "19:00-07:00", "priority": "normal"}
//
// A route with "deidentify": "basic" sends its destinations de-identified
// copies only:
//
//	{"name": "research", "when": {"Modality": "MR"}, "to": ["RESEARCH_WEB"], "deidentify": "basic"}
type Spec struct {
	Name string `json:"name"`
	// When maps a fact to a Go regular expression it must match: every
	// one must hold. The facts are calling_ae, called_ae, source (dimse,
	// stow, migrate, import) and attribute keywords (Modality,
	// StudyDescription…), matched against the attribute's values joined
	// by backslashes, "" when the instance lacks it. A regular
	// expression matches anywhere in the value, as Go's does: anchor it
	// (^CT$) to match the whole.
	When map[string]string `json:"when"`
	// To names the destinations: remote AE titles or DICOMweb
	// destinations.
	To []string `json:"to"`
	// Delay, a Go duration, gathers the instances of a study that
	// arrive within it into one send: the study is sent once Delay has
	// passed since its last instance arrived. Default 0: each instance
	// is sent as soon as it is stored.
	Delay string `json:"delay,omitempty"`
	// Window, "HH:MM-HH:MM" in local time, allows sending only inside
	// it; an end before the start crosses midnight.
	Window string `json:"window,omitempty"`
	// Priority is low, normal (the default) or high: a destination's
	// workers take the higher first.
	Priority string `json:"priority,omitempty"`
	// Deidentify "basic" makes the route's destinations receive
	// de-identified copies only (PS3.15 Annex E Basic Application
	// Level Confidentiality Profile, as package deid applies it). A
	// destination receives either de-identified copies or the
	// originals, never both: every route to it must say the same.
	Deidentify string `json:"deidentify,omitempty"`
	// AllowBurnedIn lets a de-identifying route send instances with
	// burned-in annotation (0028,0301 YES), which it otherwise leaves
	// out.
	AllowBurnedIn bool `json:"allow_burned_in,omitempty"`
}

// DeidentifyBasic is the one de-identification profile routes apply.
const DeidentifyBasic = "basic"

// Sources are the ways an instance comes in, the values of the fact
// "source".
var Sources = []string{"dimse", "stow", "migrate", "import"}

// Priority orders the tasks of a destination.
type Priority int

const (
	Low    Priority = 1
	Normal Priority = 2
	High   Priority = 3
)

// ParsePriority reads low, normal or high; "" is normal.
func ParsePriority(s string) (Priority, error) {
	switch s {
	case "low":
		return Low, nil
	case "normal", "":
		return Normal, nil
	case "high":
		return High, nil
	}
	return 0, fmt.Errorf("route: priority %q is not low, normal or high", s)
}

func (p Priority) String() string {
	switch p {
	case Low:
		return "low"
	case Normal:
		return "normal"
	case High:
		return "high"
	}
	return fmt.Sprintf("Priority(%d)", int(p))
}

// Route is a compiled route.
type Route struct {
	Name     string
	To       []string
	Delay    time.Duration
	Window   Window
	Priority Priority
	// Deidentify is "" or DeidentifyBasic; AllowBurnedIn as in Spec.
	Deidentify    string
	AllowBurnedIn bool
	conds         []condition
}

// condition is one entry of When.
type condition struct {
	fact string
	tag  tag.Tag // 0 for the request's facts
	re   *regexp.Regexp
}

// Facts are what a route matches an instance against.
type Facts struct {
	CallingAE, CalledAE string
	// Source is how the instance came in: dimse, stow, migrate, import.
	Source string
	// Header is the instance's header; attributes it lacks are "".
	Header *dicom.Dataset
}

func (f *Facts) value(c condition) string {
	switch c.fact {
	case "calling_ae":
		return strings.TrimSpace(f.CallingAE)
	case "called_ae":
		return strings.TrimSpace(f.CalledAE)
	case "source":
		return f.Source
	}
	return f.Header.String(c.tag)
}

// Matches reports whether every condition of r holds for f.
func (r *Route) Matches(f *Facts) bool {
	for _, c := range r.conds {
		if !c.re.MatchString(f.value(c)) {
			return false
		}
	}
	return true
}

// Rules are the compiled routes of a configuration.
type Rules struct {
	routes []*Route
	loc    *time.Location
}

// Compile checks and compiles the routes, and one route per --forward
// destination (named "forward DEST", sending every instance at once).
// known reports whether a destination is configured; loc is the zone of
// the windows (time.Local when nil).
func Compile(cfgs []Spec, forward []string, known func(string) bool, loc *time.Location) (*Rules, error) {
	if loc == nil {
		loc = time.Local
	}
	rs := &Rules{loc: loc}
	names := map[string]bool{}
	for i, c := range cfgs {
		r, err := compile(c, known, loc)
		if err != nil {
			if c.Name == "" {
				return nil, fmt.Errorf("%w: route %d: %v", ErrConfig, i+1, err)
			}
			return nil, fmt.Errorf("%w: route %q: %v", ErrConfig, c.Name, err)
		}
		if names[r.Name] {
			return nil, fmt.Errorf("%w: two routes are named %q", ErrConfig, r.Name)
		}
		names[r.Name] = true
		rs.routes = append(rs.routes, r)
	}
	for _, d := range forward {
		if !known(d) {
			return nil, fmt.Errorf("%w: forward: %q is neither a remote AE nor a DICOMweb destination", ErrConfig, d)
		}
		rs.routes = append(rs.routes, &Route{Name: "forward " + d, To: []string{d}, Priority: Normal, Window: Window{loc: loc}})
	}
	if err := rs.checkDeidentify(); err != nil {
		return nil, err
	}
	return rs, nil
}

// checkDeidentify refuses a destination that one route sends
// de-identified copies and another the originals, or that two routes
// send de-identified copies with and without burned-in annotation: the
// queue holds a study once per destination, so a destination is one or
// the other.
func (rs *Rules) checkDeidentify() error {
	first := map[string]*Route{}
	for _, r := range rs.routes {
		for _, d := range r.To {
			f, ok := first[d]
			if !ok {
				first[d] = r
				continue
			}
			if f.Deidentify != r.Deidentify || f.AllowBurnedIn != r.AllowBurnedIn {
				return fmt.Errorf("%w: routes %q and %q both send to %s, one de-identified (or with burned-in annotation) and one not: give de-identified data a destination of its own", ErrConfig, f.Name, r.Name, d)
			}
		}
	}
	return nil
}

// Deidentify returns how the routes send dest: DeidentifyBasic when they
// send it de-identified copies only, and whether instances with
// burned-in annotation go too.
func (rs *Rules) Deidentify(dest string) (profile string, allowBurnedIn bool) {
	for _, r := range rs.routes {
		if slices.Contains(r.To, dest) {
			return r.Deidentify, r.AllowBurnedIn
		}
	}
	return "", false
}

func compile(c Spec, known func(string) bool, loc *time.Location) (*Route, error) {
	if strings.TrimSpace(c.Name) == "" {
		return nil, errors.New("no name")
	}
	if len(c.To) == 0 {
		return nil, errors.New(`no destination in "to"`)
	}
	r := &Route{Name: c.Name}
	for _, d := range c.To {
		if !known(d) {
			return nil, fmt.Errorf("destination %q is neither a remote AE nor a DICOMweb destination", d)
		}
		if !slices.Contains(r.To, d) {
			r.To = append(r.To, d)
		}
	}
	var err error
	if c.Delay != "" {
		if r.Delay, err = time.ParseDuration(c.Delay); err != nil {
			return nil, fmt.Errorf("delay: %w", err)
		}
		if r.Delay < 0 {
			return nil, fmt.Errorf("delay %s is negative", c.Delay)
		}
	}
	if r.Window, err = ParseWindow(c.Window, loc); err != nil {
		return nil, err
	}
	if r.Priority, err = ParsePriority(c.Priority); err != nil {
		return nil, err
	}
	switch c.Deidentify {
	case "", DeidentifyBasic:
		r.Deidentify = c.Deidentify
	default:
		return nil, fmt.Errorf("deidentify %q: the profile pacsd applies is basic", c.Deidentify)
	}
	if c.AllowBurnedIn && c.Deidentify == "" {
		return nil, errors.New(`allow_burned_in is for a route that says "deidentify"`)
	}
	r.AllowBurnedIn = c.AllowBurnedIn
	facts := make([]string, 0, len(c.When))
	for k := range c.When {
		facts = append(facts, k)
	}
	sort.Strings(facts)
	for _, k := range facts {
		cond := condition{fact: k}
		switch k {
		case "calling_ae", "called_ae", "source":
		default:
			t, ok := tag.ByKeyword(k)
			if !ok {
				return nil, fmt.Errorf("when: %q is not calling_ae, called_ae, source or an attribute keyword", k)
			}
			info, _ := tag.Lookup(t)
			if info.VR == "SQ" || info.VR == "UN" || strings.HasPrefix(info.VR, "O") {
				return nil, fmt.Errorf("when: %s has no text value to match (VR %s)", k, info.VR)
			}
			cond.tag = t
		}
		if cond.re, err = regexp.Compile(c.When[k]); err != nil {
			return nil, fmt.Errorf("when %s: %w", k, err)
		}
		r.conds = append(r.conds, cond)
	}
	return r, nil
}

// Routes returns the compiled routes, in configuration order, the
// --forward ones last.
func (rs *Rules) Routes() []*Route { return rs.routes }

// Target is a destination an instance is to be sent to, and when.
type Target struct {
	Destination string
	// Due is the earliest time to send it: after the route's delay,
	// inside its window.
	Due      time.Time
	Window   Window
	Priority Priority
	// Routes names the routes that chose the destination.
	Routes []string
}

// Match returns the destinations f is to be sent to, received at now, in
// the order the routes name them. Where several routes choose the same
// destination, the one that would send it first decides when, the
// highest priority among them how urgently.
func (rs *Rules) Match(f *Facts, now time.Time) []Target {
	var out []Target
	for _, r := range rs.routes {
		if !r.Matches(f) {
			continue
		}
		due := r.Window.Next(now.Add(r.Delay))
		for _, d := range r.To {
			i := slices.IndexFunc(out, func(t Target) bool { return t.Destination == d })
			if i < 0 {
				out = append(out, Target{Destination: d, Due: due, Window: r.Window, Priority: r.Priority, Routes: []string{r.Name}})
				continue
			}
			t := &out[i]
			if due.Before(t.Due) {
				t.Due, t.Window = due, r.Window
			}
			t.Priority = max(t.Priority, r.Priority)
			t.Routes = append(t.Routes, r.Name)
		}
	}
	return out
}
