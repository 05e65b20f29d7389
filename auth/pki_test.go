package auth

import (
	"testing"

	"github.com/pacsd/pacsd/internal/testpeer"
)

// The tests' certificates come from testpeer's CA; these names keep them
// short.
type issued = testpeer.Issued

func newTestCA(t testing.TB, dir, name string) *testpeer.CA { return testpeer.NewCAT(t, dir, name) }
