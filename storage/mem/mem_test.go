package mem_test

import (
	"testing"

	"github.com/pacsd/pacsd/storage"
	"github.com/pacsd/pacsd/storage/mem"
	"github.com/pacsd/pacsd/storage/storagetest"
)

func TestStore(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return mem.New() })
}
