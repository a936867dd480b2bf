// Package tui is `pubsub top`: a bubbletea monitor of every node in a
// cluster, fed by the snapshots nodes publish on $SYS/stats/<node>.
//
// # Data
//
// Cluster keeps, per node, the latest and the previous snapshot and when
// the node was last heard from. Rates (msgs/s, bytes/s, drops/s) are counter
// deltas between a node's two latest snapshots divided by the time between
// them on the node's own clock, so network delay does not distort them. A
// node silent for more than three reporting intervals (the monitor's, or
// the node's own if its snapshots come further apart, up to a minute) is
// shown as down with the time since it was last heard, never dropped; a
// node whose uptime or counters went down restarted, and its rates wait
// for the next snapshot.
// Cluster is also the engine of `pubsub top --once`: JSON renders the
// document scripts read, Text the plain table.
//
// # Model, update, view
//
// Model follows the Elm architecture bubbletea imposes, split by file:
// model.go (state, Init), update.go (messages and keys), view.go
// (rendering), keys.go (the key map shown by bubbles/help), columns.go
// (what each table column shows and how it sorts). Everything arrives as a
// message: SnapshotMsg from the CLI's subscription, ConnStatusMsg from its
// connection, TickMsg from a timer command. Update never blocks and never
// reads the clock, so tests drive time by sending ticks, and View is a pure
// function of the model and the window size, so tests compare it with
// golden files (go test ./tui -update rewrites them).
//
// The screen refreshes on ticks, not on each snapshot, so it moves at a
// steady cadence; pausing stops the refresh while snapshots keep being
// recorded. When the window narrows, long node names are shortened to 16
// cells and then columns are dropped in a fixed priority order (rates and
// latency last) before any line would wrap; when it gets short, the
// sparkline and then the help give way to the table. Text from the network
// is sanitised before it reaches the terminal. Colours are the terminal's
// 16 basic ones, and Options.NoColor (NO_COLOR) leaves only bold and faint.
package tui
