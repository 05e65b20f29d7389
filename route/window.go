package route

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Window is a daily time window, in a time zone: "19:00-07:00" allows
// from seven in the evening to seven in the morning. The zero Window
// allows any time.
type Window struct {
	start, end int // seconds since midnight
	set        bool
	loc        *time.Location
}

// ParseWindow reads "HH:MM-HH:MM" in loc (time.Local when nil); the end
// may be 24:00, and an end before the start crosses midnight. The empty
// string is the zero Window.
func ParseWindow(s string, loc *time.Location) (Window, error) {
	if loc == nil {
		loc = time.Local
	}
	if s == "" {
		return Window{loc: loc}, nil
	}
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return Window{}, fmt.Errorf("route: window %q is not HH:MM-HH:MM", s)
	}
	start, err := clockTime(strings.TrimSpace(a))
	if err != nil {
		return Window{}, fmt.Errorf("route: window %q: %w", s, err)
	}
	end, err := clockTime(strings.TrimSpace(b))
	if err != nil {
		return Window{}, fmt.Errorf("route: window %q: %w", s, err)
	}
	if start == end || start == 24*3600 {
		return Window{}, fmt.Errorf("route: window %q is empty or the whole day; leave it out to allow any time", s)
	}
	return Window{start: start, end: end, set: true, loc: loc}, nil
}

// clockTime reads "HH:MM" as seconds since midnight, 24:00 included.
func clockTime(s string) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) == 0 || len(h) > 2 || len(m) != 2 {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh > 24 || hh == 24 && mm != 0 {
		return 0, fmt.Errorf("%q is not a time of day", s)
	}
	return hh*3600 + mm*60, nil
}

// IsZero reports whether w allows any time.
func (w Window) IsZero() bool { return !w.set }

func (w Window) String() string {
	if !w.set {
		return ""
	}
	f := func(s int) string { return fmt.Sprintf("%02d:%02d", s/3600, s%3600/60) }
	return f(w.start) + "-" + f(w.end)
}

// secondOfDay is t's time of day in w's zone, in seconds, with the
// fraction.
func (w Window) secondOfDay(t time.Time) float64 {
	t = t.In(w.loc)
	y, mo, d := t.Date()
	midnight := time.Date(y, mo, d, 0, 0, 0, 0, w.loc)
	return t.Sub(midnight).Seconds()
}

// Contains reports whether t is inside the window.
func (w Window) Contains(t time.Time) bool {
	if !w.set {
		return true
	}
	s := w.secondOfDay(t)
	if w.start < w.end {
		return s >= float64(w.start) && s < float64(w.end)
	}
	return s >= float64(w.start) || s < float64(w.end)
}

// Next returns the earliest time not before t inside the window: t
// itself when it is inside, else the window's next opening.
func (w Window) Next(t time.Time) time.Time {
	if w.Contains(t) {
		return t
	}
	lt := t.In(w.loc)
	y, mo, d := lt.Date()
	open := time.Date(y, mo, d, w.start/3600, w.start%3600/60, 0, 0, w.loc)
	if !open.After(t) {
		open = time.Date(y, mo, d+1, w.start/3600, w.start%3600/60, 0, 0, w.loc)
	}
	return open
}
