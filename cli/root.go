// Package cli builds the `pubsub` command tree. Each command lives in its
// own file as flags -> options struct -> run(ctx, opts, streams), so tests
// can check parsing without running anything and run without parsing.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes shared by every command (DESIGN §1).
const (
	ExitOK      = 0
	ExitRuntime = 1
	ExitUsage   = 2
	// ExitTimeout: `pubsub sub -W` ended before any message arrived.
	ExitTimeout = 3
)

// Streams are the command's standard streams, injected for tests.
type Streams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
	// Env looks up environment variables (os.LookupEnv by default).
	Env func(string) (string, bool)
}

// StdStreams are the process's own.
func StdStreams() Streams {
	return Streams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr, Env: os.LookupEnv}
}

func (s Streams) getenv(name string) string {
	if s.Env == nil {
		return ""
	}
	v, _ := s.Env(name)
	return v
}

// BuildInfo is stamped by the linker (goreleaser) through cmd/pubsub.
type BuildInfo struct {
	Version, Commit, Date string
}

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

func usageError(format string, args ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, args...)}
}

// NewRootCommand builds the command tree.
func NewRootCommand(streams Streams, info BuildInfo) *cobra.Command {
	root := &cobra.Command{
		Use:   "pubsub",
		Short: "A clustered real-time messaging broker and the tools around it",
		Long: `pubsub is one binary: a broker node (MQTT 3.1.1 over TCP, TLS and WebSocket,
plus an Eventhub-compatible JSON-RPC WebSocket protocol, all on one port) and
the terminal tools that drive and watch it.`,
		Example: `  pubsub serve                          # run a node on :8080
  pubsub sub 'chat/#'                   # print messages as they arrive
  pubsub pub chat/room1 'hello'         # publish one message`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       info.Version,
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: ExitUsage, err: err}
	})
	root.AddCommand(
		newServeCommand(streams, info),
		newPubCommand(streams),
		newSubCommand(streams),
		newVersionCommand(streams, info),
		newCompletionCommand(streams),
		newClusterCommand(streams),
		newBenchCommand(streams),
		newTopCommand(streams, runTop),
		newKeygenCommand(streams),
	)
	return root
}

// Execute runs the command line and returns the process exit code; it never
// calls os.Exit, so tests capture the code.
func Execute(ctx context.Context, args []string, streams Streams, info BuildInfo) int {
	root := NewRootCommand(streams, info)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	code := ExitRuntime
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	} else if isCobraUsageError(err) {
		code = ExitUsage
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintf(streams.ErrOut, "pubsub: %s\n", msg)
		if code == ExitUsage {
			fmt.Fprintln(streams.ErrOut, "Run 'pubsub --help' or 'pubsub COMMAND --help' for usage.")
		}
	}
	return code
}

// isCobraUsageError recognises cobra's own argument and command errors,
// which it returns as plain errors.
func isCobraUsageError(err error) bool {
	msg := err.Error()
	for _, s := range []string{"unknown command", "accepts ", "requires at least", "requires at most", "unknown flag", "unknown shorthand", "invalid argument"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
