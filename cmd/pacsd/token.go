package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/pacsd/pacsd/auth"
)

// tokenCommand manages the machine tokens of --http-auth token.
type tokenCommand struct {
	Create tokenCreateCommand `cmd:"" help:"Make a new machine token: print it, once, and append its hash to the token file."`
}

// tokenCreateCommand makes a machine token. The token is printed alone on
// standard output, so that a script can capture it, and exists nowhere
// else: the file keeps its SHA-256 only. A running pacsd serve sees the
// new token within a second.
type tokenCreateCommand struct {
	baseSettings
	tokenFileSettings
	Name    string `arg:"" help:"the token's name, which logs and the audit trail show: letters, digits and . _ - @"`
	Scopes  string `config:"-" required:"" placeholder:"LIST" help:"what the token may do, comma-separated: read, write, delete, admin, research"`
	Issuers string `config:"-" placeholder:"A|B" help:"the issuers of patient IDs whose patients the token may see, separated by | (default: all)"`
}

func (c *tokenCreateCommand) Run(ctx context.Context, p *process) error {
	if c.TokenFile == "" {
		return &usageError{errors.New("token create needs --token-file"), "pacsd token create -h"}
	}
	scopes, err := auth.ParseScopes(c.Scopes)
	if err != nil {
		return &usageError{err, "pacsd token create -h"}
	}
	var issuers []string
	for is := range strings.SplitSeq(c.Issuers, "|") {
		if is = strings.TrimSpace(is); is != "" {
			issuers = append(issuers, is)
		}
	}
	token, err := auth.CreateToken(c.TokenFile, c.Name, scopes, issuers)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(p.stdout, token)
	return err
}
