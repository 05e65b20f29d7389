package metrics

import (
	"strings"
	"sync"
)

// otherLabel stands for every value beyond a label's bound.
const otherLabel = "other"

// aeLabels maps calling AE titles onto label values: the known titles as
// they are, anything else as "other". A modality misconfigured to send a
// new title with each association must not grow a series per title.
type aeLabels map[string]bool

func newAELabels(known []string) aeLabels {
	m := aeLabels{}
	for _, ae := range known {
		// An allow-list entry may tie the title to a host: AET@HOST.
		ae, _, _ = strings.Cut(ae, "@")
		if ae = strings.TrimSpace(ae); ae != "" {
			m[ae] = true
		}
	}
	return m
}

func (m aeLabels) label(ae string) string {
	// AE titles are compared without their space padding (PS3.5 §6.2).
	if ae = strings.TrimSpace(ae); m[ae] {
		return ae
	}
	return otherLabel
}

// maxStatusLabels bounds the distinct DIMSE status codes counted apart.
// pacsd answers with some twenty codes; peers answering its requests as
// SCU may use others, but a peer sending a new code with each response
// must not grow the series without end.
const maxStatusLabels = 64

// cappedLabel admits the first max distinct values of a label and maps
// later new ones to "other".
type cappedLabel struct {
	max  int
	mu   sync.RWMutex
	seen map[string]bool
}

func newCappedLabel(max int) *cappedLabel {
	return &cappedLabel{max: max, seen: map[string]bool{}}
}

func (c *cappedLabel) label(v string) string {
	c.mu.RLock()
	ok := c.seen[v]
	c.mu.RUnlock()
	if ok {
		return v
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen[v] {
		return v
	}
	if len(c.seen) >= c.max {
		return otherLabel
	}
	c.seen[v] = true
	return v
}
