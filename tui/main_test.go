package tui

import (
	"testing"

	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Golden files are plain text: no colour or style sequences, whatever
	// terminal runs the tests.
	lipgloss.SetColorProfile(termenv.Ascii)
	goleak.VerifyTestMain(m)
}
