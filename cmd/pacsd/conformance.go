package main

import (
	"context"

	"github.com/pacsd/pacsd/conformance"
)

// conformanceCommand writes the DICOM Conformance Statement of this
// installation: the code's own tables, with the AE title, addresses and
// limits of the configuration it is given (the one pacsd serve runs
// with). Without one it writes docs/conformance-statement.md.
type conformanceCommand struct {
	baseSettings
	archiveSettings
	dimseSettings
	querySettings
	httpSettings
	Format string `config:"-" default:"md" enum:"md,html" placeholder:"FORMAT" help:"md (Markdown) or html (a self-contained page)"`
}

func (c *conformanceCommand) Run(ctx context.Context, p *process) error {
	if err := complete(&c.archiveSettings, &c.dimseSettings, &c.httpSettings); err != nil {
		return err
	}
	f := conformance.Defaults()
	if version != "dev" {
		f.Version = version
	}
	f.AETitle = c.AETitle
	f.DIMSEAddr = c.DIMSEAddr
	f.MaxPDULength = c.MaxPDU
	f.MaxAssoc = c.MaxAssociations
	f.IdleTimeout = c.IdleTimeout
	f.MaxMatches = c.MaxMatches
	f.HTTPAddr = c.HTTPAddr
	f.DICOMwebRoot = c.DICOMwebRoot
	return conformance.Write(p.stdout, c.Format, f)
}
