// Command pacsd is a vendor-neutral DICOM archive: modalities and other
// archives store to it over DIMSE, and it keeps every instance, byte for
// byte as received, in object storage, with an index to find them.
//
// Usage:
//
//	pacsd serve [flags]     run the archive
//	pacsd retrieve [flags]  pull studies from another archive into this one
//	pacsd migrate --from SOURCE [flags]
//	                        move every study of another archive into this one
//	pacsd migrate status    how far each migration and import is
//	pacsd migrate report    one line per study migrated or imported, then totals
//	pacsd import PATH...    import instances from files and directories
//	pacsd reindex [flags]   rebuild the index from the objects in storage
//	pacsd verify [flags]    compare the index with storage; exit 1 on any problem
//	pacsd audit [flags]     list audit records; audit verify checks the chain
//	pacsd token create NAME make a machine token for --http-auth token
//	pacsd status [flags]    ask a running pacsd serve for its state
//	pacsd conformance       write the DICOM Conformance Statement
//	pacsd delete [flags]    move a study, series or instance to the trash
//	pacsd restore [flags]   bring back what a study has in the trash
//	pacsd purge [flags]     empty the trash now
//	pacsd retention [flags] list studies expired under the retention rules, --apply trashes them
//	pacsd version           print the version
//
// "pacsd COMMAND -h" lists the flags of a command. The settings among them
// can also be given in the environment (PACSD_ and the name in capitals,
// with underscores) and in a JSON config file (--config). pacsd exits 2
// on a command line it cannot run, 1 when a command fails.
//
// # Adding a command
//
// The command line is parsed by github.com/alecthomas/kong from the struct
// commands below. A command is a struct type, in a file named for it, with
// a Run method; it embeds the settings groups it uses (config.go), which
// become its flags (baseSettings, with --config and logging, always), and
// has fields of its own:
//
//	// queueCommand lists the send queue, one line per destination.
//	type queueCommand struct {
//		baseSettings
//		storeSettings
//		JSON bool `config:"-" help:"print JSON instead of lines"`
//	}
//
//	func (c *queueCommand) Run(ctx context.Context, p *process) error {
//		if err := complete(&c.storeSettings); err != nil {
//			return err
//		}
//		…
//	}
//
// and one line in commands:
//
//	Queue queueCommand `cmd:"" help:"list the send queue"`
//
// A command with subcommands (queue retry, migrate report) is a struct of
// such fields, with no Run of its own (kong would run it as well); the one
// that runs when none is named is tagged default:"withargs". Settings the
// subcommands share can be embedded in the parent, whose struct a
// subcommand's Run then takes as a parameter:
//
//	func (c *queueRetryCommand) Run(ctx context.Context, p *process, queue *queueCommand) error
//
// A positional argument is a field tagged arg:"" (and name:"…" for its
// name in -h).
//
// # Adding a setting
//
// A setting is one field in the settings group it belongs to, or in the
// command that alone uses it; its tags give the flag, help and default,
// and its environment variable and config file key follow from its name
// (config.go explains the tags):
//
//	PublicURL string `name:"public-url" placeholder:"URL" help:"the URL clients reach pacsd by"`
//
// If it has a default that depends on other settings, or must be checked,
// do that in its group's complete method, which the commands' Run methods
// call. A secret, or a structure only a config file can hold (routes,
// rules), has no flag:
//
//	RemoteWebTokens map[string]string `kong:"-" config:"remote_web_tokens" help:"bearer tokens of the DICOMweb destinations, by name"`
//
// Document the setting in the README's table.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pacsd:", err)
	}
	os.Exit(exitStatus(err))
}

// exitStatus is pacsd's exit status after run returned err: 0 on success, 2
// for a command line pacsd cannot run, 1 for a command that failed.
func exitStatus(err error) int {
	var usage *usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &usage):
		return 2
	}
	return 1
}

// usageError is a command line pacsd cannot run.
type usageError struct {
	err  error
	help string // the command line that explains, "pacsd serve -h"
}

func (e *usageError) Error() string { return fmt.Sprintf("%v (see %q)", e.err, e.help) }
func (e *usageError) Unwrap() error { return e.err }

// commands are pacsd's commands.
type commands struct {
	Serve       serveCommand       `cmd:"" help:"Run the archive: DIMSE and DICOMweb in front of storage and index."`
	Retrieve    retrieveCommand    `cmd:"" help:"Pull studies from another archive into this one, by C-GET or C-MOVE."`
	Migrate     migrateCommand     `cmd:"" help:"Move every study of another archive into this one, verified study by study; status and report say how far it is."`
	Import      importCommand      `cmd:"" help:"Import instances from files and directories, verified by SHA-256."`
	Reindex     reindexCommand     `cmd:"" help:"Rebuild the index from the objects in storage."`
	Verify      verifyCommand      `cmd:"" help:"Compare the index with storage; exit 1 on any difference."`
	Audit       auditCommand       `cmd:"" help:"List the audit trail's records, or check its hash chain (audit verify)."`
	Token       tokenCommand       `cmd:"" help:"Manage the machine tokens of --http-auth token."`
	Routes      routesCommand      `cmd:"" help:"Check the forwarding rules."`
	Send        sendCommand        `cmd:"" help:"Queue a study, or one of its series, for destinations; pacsd serve sends it."`
	Export      exportCommand      `cmd:"" help:"Write a study's instances into a directory, as archived or de-identified."`
	Queue       queueCommand       `cmd:"" help:"Show, retry and drop the forwarding queue's tasks."`
	Delete      deleteCommand      `cmd:"" help:"Move a study, series or instance to the trash; every query and retrieval stops showing it at once."`
	Restore     restoreCommand     `cmd:"" help:"Bring back what a study has in the trash."`
	Purge       purgeCommand       `cmd:"" help:"Empty the whole trash now, deleting its objects from storage for good."`
	Retention   retentionCommand   `cmd:"" help:"List the studies the retention rules let expire (--dry-run), or move them to the trash (--apply)."`
	Patient     patientCommand     `cmd:"" help:"Show a person's linked patients; link and unlink patients."`
	Correct     correctCommand     `cmd:"" help:"Correct a study, move a series to another study, list and undo corrections."`
	Status      statusCommand      `cmd:"" help:"Ask a running pacsd serve, over its HTTP port, for its state."`
	Conformance conformanceCommand `cmd:"" help:"Write the DICOM Conformance Statement of this configuration."`
	Version     versionCommand     `cmd:"" help:"Print pacsd's version."`
}

// process is what a command's Run gets of pacsd's process besides its
// settings: the environment, and standard output and error.
type process struct {
	getenv         func(string) string
	stdout, stderr io.Writer
}

// run is pacsd without the process: arguments, environment and output are
// passed in, so that tests run the real program in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	kctx, err := parse(args, getenv, stdout, stderr)
	if kctx == nil {
		return err // or help was asked for, and given
	}
	kctx.BindTo(ctx, (*context.Context)(nil))
	return kctx.Run(&process{getenv: getenv, stdout: stdout, stderr: stderr})
}

// parse reads the command line args, and the environment and config file
// for the settings it leaves unset, into the command it selects. After
// printing help, as -h asks, it returns nil and no error.
func parse(args []string, getenv func(string) string, stdout, stderr io.Writer) (*kong.Context, error) {
	if len(args) > 0 && args[0] == "help" {
		args = append(args[1:len(args):len(args)], "--help")
	}
	var cmds commands
	src := &source{getenv: getenv}
	helped := false
	parser, err := kong.New(&cmds,
		kong.Name("pacsd"),
		kong.Description("pacsd is a DICOM archive: modalities and other archives store to it over DIMSE and DICOMweb, and it keeps every instance, byte for byte as received, in object storage, with an index to find them."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(int) { helped = true }), // only -h exits
		kong.Resolvers(src),
		kong.ValueFormatter(flagHelp),
		kong.Help(func(opts kong.HelpOptions, kctx *kong.Context) error {
			if err := kong.DefaultHelpPrinter(opts, kctx); err != nil {
				return err
			}
			return settingsHelp(kctx.Stdout, kctx.Selected())
		}),
	)
	if err != nil {
		return nil, err // a mistake in commands
	}
	if len(args) == 0 {
		// Which command is for the operator to say: list them.
		parser.Stdout = stderr
		kctx, err := kong.Trace(parser, nil)
		if err == nil {
			err = kctx.PrintUsage(false)
		}
		return nil, &usageError{errors.Join(errors.New("no command given"), err), "pacsd -h"}
	}
	kctx, err := parser.Parse(singleDash(parser.Model, args))
	if helped {
		return nil, nil
	}
	if perr, ok := errors.AsType[*kong.ParseError](err); ok {
		help := "pacsd -h"
		if cmd := perr.Context.Selected(); cmd != nil {
			help = cmd.FullPath() + " -h"
		}
		return nil, &usageError{perr.Unwrap(), help}
	}
	if err != nil {
		return nil, err
	}
	if err := src.fill(kctx, kctx.Selected().Target); err != nil {
		return nil, err
	}
	return kctx, nil
}

// singleDash returns args with the long flags written with one dash, as
// Go's flag package takes them and pacsd did before, written with two:
// -data DIR is --data DIR.
func singleDash(app *kong.Application, args []string) []string {
	long := map[string]bool{}
	kong.Visit(app, func(n kong.Visitable, next kong.Next) error {
		if f, ok := n.(*kong.Flag); ok {
			long[f.Name] = true
			for _, a := range f.Aliases {
				long[a] = true
			}
		}
		return next(nil)
	})
	out := slices.Clone(args)
	for i, a := range out {
		if a == "--" {
			break
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "-"), "=")
		if strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && len(name) > 1 && long[name] {
			out[i] = "-" + a
		}
	}
	return out
}

// versionCommand prints pacsd's version.
type versionCommand struct{}

func (versionCommand) Run(p *process) error {
	_, err := fmt.Fprintln(p.stdout, "pacsd", version)
	return err
}
