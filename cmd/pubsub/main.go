// Command pubsub is the broker node and its command-line tools.
package main

import (
	"context"
	"os"

	"github.com/pubsub/pubsub/cli"
)

// Stamped by goreleaser with -ldflags "-X main.version=...".
var (
	version = "dev"
	commit  = "none"
	date    = "unknown"
)

func main() {
	info := cli.BuildInfo{Version: version, Commit: commit, Date: date}
	os.Exit(cli.Execute(context.Background(), os.Args[1:], cli.StdStreams(), info))
}
