package migrate

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Window is a daily time window in local time, "19:00-07:00": a
// migration moves studies only inside it, so that the source serves its
// radiologists by day. The zero Window is always open.
type Window struct {
	start, end int // minutes since midnight
	set        bool
	loc        *time.Location
}

// ParseWindow reads "HH:MM-HH:MM" in loc (time.Local when nil). An end
// before the start crosses midnight; 24:00 is the end of the day. The
// empty string is the zero Window.
func ParseWindow(s string, loc *time.Location) (Window, error) {
	if loc == nil {
		loc = time.Local
	}
	if s == "" {
		return Window{loc: loc}, nil
	}
	a, b, ok := strings.Cut(s, "-")
	start, err1 := minuteOfDay(strings.TrimSpace(a))
	end, err2 := minuteOfDay(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil {
		return Window{}, fmt.Errorf("migrate: window %q is not HH:MM-HH:MM", s)
	}
	if start == end || start == 24*60 {
		return Window{}, fmt.Errorf("migrate: window %q is empty or the whole day; leave it out to migrate at any time", s)
	}
	return Window{start: start, end: end, set: true, loc: loc}, nil
}

func minuteOfDay(s string) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || len(h) == 0 || len(h) > 2 || len(m) != 2 || err1 != nil || err2 != nil || hh < 0 || hh > 24 || mm < 0 || mm > 59 || hh == 24 && mm != 0 {
		return 0, fmt.Errorf("%q is not a time of day", s)
	}
	return hh*60 + mm, nil
}

func (w Window) String() string {
	if !w.set {
		return ""
	}
	return fmt.Sprintf("%02d:%02d-%02d:%02d", w.start/60, w.start%60, w.end/60, w.end%60)
}

// Open reports whether t is inside the window.
func (w Window) Open(t time.Time) bool {
	if !w.set {
		return true
	}
	t = t.In(w.loc)
	m := t.Hour()*60 + t.Minute()
	if w.start < w.end {
		return m >= w.start && m < w.end
	}
	return m >= w.start || m < w.end
}

// Next returns t when the window is open at t, else when it next opens.
func (w Window) Next(t time.Time) time.Time {
	if w.Open(t) {
		return t
	}
	lt := t.In(w.loc)
	y, mo, d := lt.Date()
	open := time.Date(y, mo, d, w.start/60, w.start%60, 0, 0, w.loc)
	if !open.After(t) {
		open = time.Date(y, mo, d+1, w.start/60, w.start%60, 0, 0, w.loc)
	}
	return open
}
