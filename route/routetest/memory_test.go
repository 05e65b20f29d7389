package routetest

import (
	"testing"
	"time"

	"github.com/pacsd/pacsd/route"
)

func TestMemory(t *testing.T) {
	RunQueueTests(t, func(t *testing.T, now func() time.Time) route.Queue { return NewMemory(now) })
}
