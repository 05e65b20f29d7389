// Command pacsd is a vendor-neutral DICOM archive: modalities and other
// archives store to it over DIMSE, and it keeps every instance, byte for
// byte as received, in object storage, with an index to find them.
//
// Usage:
//
//	pacsd serve [flags]     run the archive
//	pacsd retrieve [flags]  pull studies from another archive into this one
//	pacsd reindex [flags]   rebuild the index from the objects in storage
//	pacsd verify [flags]    compare the index with storage; exit 1 on any problem
//	pacsd version           print the version
//
// Run "pacsd serve -h" for the flags; each can also be set in a JSON
// config file (--config) and in the environment (PACSD_...).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "pacsd:", err)
		os.Exit(1)
	}
}

// run is pacsd without the process: arguments, environment and output are
// passed in, so that tests run the real program in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		cfg, err := loadConfig(cmd, args, getenv, stderr, nil)
		if err != nil {
			return err
		}
		return serve(ctx, cfg, stdout, stderr)
	case "retrieve":
		return retrieveCommand(ctx, args, getenv, stdout, stderr)
	case "reindex":
		return reindexCommand(ctx, args, getenv, stdout, stderr)
	case "verify":
		return verifyCommand(ctx, args, getenv, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "pacsd", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, "usage: pacsd serve [flags] | pacsd retrieve [flags] | pacsd reindex [flags] | pacsd verify [flags] | pacsd version\nRun \"pacsd serve -h\" and \"pacsd retrieve -h\" for the flags; reindex and verify take serve's.")
		return nil
	}
	return fmt.Errorf("unknown command %q; try \"pacsd help\"", cmd)
}
