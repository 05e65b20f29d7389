package migratetest_test

import (
	"testing"

	"github.com/pacsd/pacsd/migrate"
	"github.com/pacsd/pacsd/migrate/migratetest"
)

func TestMemory(t *testing.T) {
	migratetest.Run(t, func(*testing.T) migrate.State { return &migratetest.Memory{} })
}
