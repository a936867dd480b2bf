package broker_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// chromiumPath is where Debian's chromium package (installed by .ci/run)
// puts the browser.
const chromiumPath = "/usr/bin/chromium"

// browserTimeout bounds the whole browser session: start, two page loads,
// shutdown. Chromium starts in a second or two on an idle machine.
const browserTimeout = 30 * time.Second

// TestKeygenInBrowser is the acceptance test of the /keygen page: a real
// headless Chromium, with JavaScript switched off as the page promises it
// is not needed, loads the form, fills it in, submits it, and the key read
// off the result page then publishes and subscribes over MQTT.
func TestKeygenInBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI needs %s (Debian package chromium, installed by .ci/run): %v", chromiumPath, err)
		}
		t.Skipf("no %s: install the Debian package chromium to run the browser test", chromiumPath)
	}
	n := startKeygenNode(t, nil)

	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	profile := t.TempDir()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox, // containers run as root, where the sandbox cannot start
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), // small /dev/shm in containers
		chromedp.UserDataDir(profile),
	)
	defer cancelAlloc()
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	defer cancelBrowser()

	// Every request the page makes, to prove it needs nothing but this node.
	var (
		requestsMu sync.Mutex
		requests   []string
	)
	chromedp.ListenTarget(browserCtx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			requestsMu.Lock()
			requests = append(requests, e.Request.URL)
			requestsMu.Unlock()
		}
	})

	var key, perm, channel, location string
	err := chromedp.Run(browserCtx,
		network.Enable(),
		emulation.SetScriptExecutionDisabled(true),
		chromedp.Navigate(n.base+"/keygen"),
		chromedp.WaitVisible("#authority", chromedp.ByID),
		chromedp.SetValue("#authority", n.master, chromedp.ByID),
		chromedp.SendKeys("#channel", "browser/room/", chromedp.ByID),
		chromedp.SetValue("#ttl", "600", chromedp.ByID),
		// read and write start ticked; add store.
		chromedp.Click("#perm-s", chromedp.ByID),
		chromedp.Click("#mint", chromedp.ByID),
		chromedp.WaitVisible("#key", chromedp.ByID),
		chromedp.Text("#key", &key, chromedp.ByID),
		chromedp.Text("#result-perm", &perm, chromedp.ByID),
		chromedp.Text("#result-channel", &channel, chromedp.ByID),
		chromedp.Location(&location),
	)
	require.NoError(t, err)

	// Close the browser now, not at return, and prove it is gone: Cancel
	// waits for the process chromedp started.
	browser := chromedp.FromContext(browserCtx).Browser
	require.NotNil(t, browser)
	proc := browser.Process()
	require.NoError(t, chromedp.Cancel(browserCtx))
	cancelAlloc()
	waitFor(t, opTimeout, func() bool { return errors.Is(proc.Signal(syscall.Signal(0)), os.ErrProcessDone) })
	waitFor(t, opTimeout, func() bool { return len(processesUsing(t, profile)) == 0 })

	require.Equal(t, n.base+"/keygen", location, "the form posts back to /keygen")
	requestsMu.Lock()
	require.NotEmpty(t, requests, "the browser's requests were observed")
	for _, u := range requests {
		require.True(t, strings.HasPrefix(u, n.base+"/"), "the page fetched %s", u)
	}
	requestsMu.Unlock()

	key = strings.TrimSpace(key)
	require.Equal(t, "rws", perm)
	require.Equal(t, "browser/room/", channel)
	cl, err := n.srv.Keyring().Verify(key)
	require.NoError(t, err)
	require.Equal(t, []string{"browser/room/#"}, cl.Read)
	require.Equal(t, []string{"browser/room/#"}, cl.Write)
	require.NotNil(t, cl.ExpiresAt)
	require.WithinDuration(t, time.Now().Add(10*time.Minute), cl.ExpiresAt.Time, 30*time.Second)

	reader, in := connectKeyed(t, n.srv, "browser-reader", key)
	subscribe(t, reader, "browser/room/#", 1)
	writer, _ := connectKeyed(t, n.srv, "browser-writer", key)
	publish(t, writer, "browser/room/lobby", 1, false, []byte("minted in a browser"))
	in.waitMessage(t, "browser/room/lobby", "minted in a browser")
}

// processesUsing lists the pids whose command line mentions dir: Chromium's
// browser, zygote, renderer and utility processes all carry the profile
// directory. On systems without /proc it reports none.
func processesUsing(t *testing.T, dir string) []string {
	t.Helper()
	if runtime.GOOS != "linux" {
		return nil
	}
	cmdlines, err := filepath.Glob("/proc/[0-9]*/cmdline")
	require.NoError(t, err)
	var pids []string
	for _, path := range cmdlines {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the process ended while we looked
		}
		if bytes.Contains(b, []byte(dir)) {
			pids = append(pids, filepath.Base(filepath.Dir(path)))
		}
	}
	return pids
}
