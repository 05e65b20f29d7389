package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/pacsd/pacsd/api"
	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/sqlindex"
	"github.com/pacsd/pacsd/nhs"
)

// identitySettings say how patients are identified across issuers:
// those of serve, which stores and queries.
type identitySettings struct {
	IssuerByAE    []string `name:"issuer-by-ae" config:"issuer_by_ae" placeholder:"AET=ISSUER" help:"the Issuer of Patient ID given to instances that a calling AE sends without one, AET=ISSUER; comma-separated or repeated"`
	DefaultIssuer string   `name:"default-issuer" placeholder:"ISSUER" help:"the Issuer of Patient ID given to instances without one from any other sender"`
	nhsSettings
}

func (s *identitySettings) complete() error {
	s.IssuerByAE = trimList(s.IssuerByAE)
	if err := s.nhsSettings.complete(); err != nil {
		return err
	}
	_, err := s.issuers()
	return err
}

// nhsSettings say which issuers of patient ID name the NHS: those of
// every command that queries the index.
type nhsSettings struct {
	NHSIssuer []string `name:"nhs-issuer" default:"NHS,2.16.840.1.113883.2.1.4.1" placeholder:"ISSUER" help:"the Issuer of Patient ID values that mark a Patient ID as an NHS number; comma-separated or repeated"`
}

func (s *nhsSettings) complete() error {
	s.NHSIssuer = trimList(s.NHSIssuer)
	return nil
}

// issuers returns the issuer policy the settings describe.
func (s *identitySettings) issuers() (archive.IssuerPolicy, error) {
	p := archive.IssuerPolicy{ByAE: map[string]string{}, Default: strings.TrimSpace(s.DefaultIssuer)}
	for _, e := range s.IssuerByAE {
		ae, issuer, ok := strings.Cut(e, "=")
		ae, issuer = strings.TrimSpace(ae), strings.TrimSpace(issuer)
		if !ok || issuer == "" {
			return p, fmt.Errorf("issuer_by_ae: %q is not AET=ISSUER", e)
		}
		if err := validAETitle(ae); err != nil {
			return p, fmt.Errorf("issuer_by_ae: %w", err)
		}
		if _, dup := p.ByAE[ae]; dup {
			return p, fmt.Errorf("issuer_by_ae: %s is given twice", ae)
		}
		p.ByAE[ae] = issuer
	}
	return p, nil
}

// indexOptions are the index options the settings ask for.
func (s *nhsSettings) indexOptions() []sqlindex.Option {
	return []sqlindex.Option{sqlindex.WithNHSIssuers(s.NHSIssuer...)}
}

func (s *nhsSettings) nhsIssuers() nhs.Issuers { return s.NHSIssuer }

// patientCommand groups the commands of linked patients. They work on
// the index while pacsd serve runs, which shows their effect at once.
type patientCommand struct {
	baseSettings
	storeSettings
	nhsSettings
	Show   patientShowCommand   `cmd:"" default:"withargs" help:"Show a person: the linked patients and their studies (the default)."`
	Link   patientLinkCommand   `cmd:"" help:"Link local patients as one person."`
	Unlink patientUnlinkCommand `cmd:"" help:"Unlink local patients from whoever they are linked to."`
}

type patientShowCommand struct {
	Patient string `arg:"" config:"-" placeholder:"ID^ISSUER" help:"the patient"`
}

type patientLinkCommand struct {
	Patients []string `arg:"" config:"-" placeholder:"ID^ISSUER" help:"the patients, two or more"`
}

type patientUnlinkCommand struct {
	Patients []string `arg:"" config:"-" placeholder:"ID^ISSUER" help:"the patients"`
}

func (c *patientCommand) open(ctx context.Context) (*sqlindex.DB, error) {
	if err := complete(&c.storeSettings, &c.nhsSettings); err != nil {
		return nil, err
	}
	return openIndex(ctx, c.Index, c.indexOptions()...)
}

// openJournal opens the index and the storage of the records of links
// (see archive.Journal).
func (c *patientCommand) openJournal(ctx context.Context, p *process) (*recordsOpened, error) {
	if err := complete(&c.storeSettings, &c.nhsSettings); err != nil {
		return nil, err
	}
	return openJournal(ctx, &c.baseSettings, &c.storeSettings, p, c.indexOptions()...)
}

func parsePatientKeys(args []string) ([]index.PatientKey, error) {
	keys := make([]index.PatientKey, 0, len(args))
	for _, a := range args {
		k, err := index.ParsePatientKey(a)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func (c *patientShowCommand) Run(ctx context.Context, p *process, pc *patientCommand) error {
	k, err := index.ParsePatientKey(c.Patient)
	if err != nil {
		return err
	}
	db, err := pc.open(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	person, err := db.Person(ctx, k)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(p.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(api.PersonOf(person))
}

func (c *patientLinkCommand) Run(ctx context.Context, p *process, pc *patientCommand) error {
	keys, err := parsePatientKeys(c.Patients)
	if err != nil {
		return err
	}
	o, err := pc.openJournal(ctx, p)
	if err != nil {
		return err
	}
	defer o.close()
	if err := o.journal.LinkPatients(ctx, index.Link{Patients: keys, Principal: cliPrincipal(p)}); err != nil {
		return err
	}
	fmt.Fprintf(p.stdout, "linked %d patients\n", len(keys))
	return nil
}

func (c *patientUnlinkCommand) Run(ctx context.Context, p *process, pc *patientCommand) error {
	keys, err := parsePatientKeys(c.Patients)
	if err != nil {
		return err
	}
	o, err := pc.openJournal(ctx, p)
	if err != nil {
		return err
	}
	defer o.close()
	if err := o.journal.LinkPatients(ctx, index.Link{Patients: keys, Unlink: true, Principal: cliPrincipal(p)}); err != nil {
		return err
	}
	fmt.Fprintf(p.stdout, "unlinked %d patients\n", len(keys))
	return nil
}
