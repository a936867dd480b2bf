#!/bin/sh
# Regenerates completions/ from the current source (goreleaser before hook).
set -e
cd "$(dirname "$0")/.."
for sh in bash zsh fish; do
  go run ./cmd/pubsub completion "$sh" > "completions/pubsub.$sh"
done
