# Convenience targets; CI runs .ci/run.
.PHONY: build test race short fuzz bench completions

build:
	go build -o pubsub ./cmd/pubsub

test:
	go test -race ./...

short:
	go test -short ./...

# FUZZTIME per target, e.g. make fuzz FUZZTIME=60s
FUZZTIME ?= 60s
fuzz:
	./.ci/fuzz $(FUZZTIME)

bench:
	go test -run '^$$' -bench . -benchmem ./broker/...

completions:
	./completions/generate.sh
