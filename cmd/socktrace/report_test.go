package main

import (
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// TestReportInBrowser: the failing story recorded with -w, made into a
// page by socktrace report, loaded by Debian's chromium (headless, in a
// network namespace of its own with only lo, host names resolving to
// nothing): the DOM has the failing destinations, their swimlanes and
// the alerts; the screenshot is not blank; the page made no request.
func TestReportInBrowser(t *testing.T) {
	browser, err := exec.LookPath("chromium")
	if err != nil {
		testnet.Skip(t, "chromium is not installed: apt-get install chromium (make deps)")
	}
	s := newStory(t)
	dir := t.TempDir()
	capPath := filepath.Join(dir, "story.st")
	p := start(t, "-o", "json", "--netns", s.ns.Path(), "-w", capPath)
	startClient(t, s.ns, s.dropped, s.good, s.shut)
	p.waitForIn(t, 15*time.Second, "the dropped destination to turn failing", alertFor("failing", 9092))
	p.waitForIn(t, 15*time.Second, "the closed port to turn failing", alertFor("failing", s.closed))
	p.stop(t)

	page := filepath.Join(dir, "report.html")
	if out, err := exec.Command(socktraceBin(t), "report", capPath, "-o", page).CombinedOutput(); err != nil {
		t.Fatalf("socktrace report: %v\n%s", err, out)
	}
	if st, err := os.Stat(page); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the page: %v, mode %v; want 0600 (it holds addresses and process names)", err, st.Mode())
	}
	// Again: the page exists.
	if out, err := exec.Command(socktraceBin(t), "report", capPath, "-o", page).CombinedOutput(); err == nil || !strings.Contains(string(out), "--force") {
		t.Errorf("a second report over the first: %v, %s; want an error that names --force", err, out)
	}

	browserNS := testnet.New(t)
	run := func(netlog string, args ...string) []byte {
		t.Helper()
		profile := t.TempDir()
		cmd := exec.Command("nsenter", append([]string{"--net=" + browserNS.Path(), browser,
			"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
			"--disable-sync", "--user-data-dir=" + profile, "--host-resolver-rules=MAP * ~NOTFOUND",
			"--log-net-log=" + netlog, "--window-size=1400,2000"}, append(args, "file://"+page)...)...)
		cmd.Stderr = nil
		done := make(chan struct{})
		var out []byte
		var err error
		go func() { out, err = cmd.Output(); close(done) }()
		select {
		case <-done:
		case <-time.After(90 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Fatalf("chromium did not finish in 90 s")
		}
		if err != nil {
			t.Fatalf("chromium %v: %v", args, err)
		}
		return out
	}
	dom := string(run(filepath.Join(dir, "netlog-dom.json"), "--dump-dom"))
	if os.Getenv("SOCKTRACE_KEEP_REPORT") != "" {
		os.WriteFile(os.Getenv("SOCKTRACE_KEEP_REPORT"), []byte(dom), 0o644)
	}
	for _, want := range []string{
		`<g class="row failing" data-dest="127.0.0.1:9092">`,
		fmt.Sprintf(`<g class="row failing" data-dest="127.0.0.1:%d">`, s.closed),
		`<div class="failing-dest" data-dest="127.0.0.1:9092">`,
		`class="alert-row alert-failing"`,
		`<line class="alert a-failing"`,
		`id="states-chart"`,
		"FAILING 127.0.0.1:9092",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page's DOM lacks %q", want)
		}
	}
	if n := strings.Count(dom, `class="alert-row alert-failing"`); n != 2 {
		t.Errorf("%d failing alerts in the page, want 2 (9092 and %d)", n, s.closed)
	}
	// The dropped destination's sockets as swimlanes, in syn-sent for
	// seconds, with their owner.
	i := strings.Index(dom, `<div class="failing-dest" data-dest="127.0.0.1:9092">`)
	if i < 0 {
		t.FailNow()
	}
	dest := dom[i:]
	if j := strings.Index(dest[1:], `<div class="failing-dest"`); j >= 0 {
		dest = dest[:j+1]
	}
	if strings.Count(dest, `<g class="lane"`) < 3 || !strings.Contains(dest, `class="bar s-syn-sent"`) || !strings.Contains(dest, selfComm()+"/") ||
		!strings.Contains(dest, "SYNs dropped on this host (NETFILTER_DROP, sent)") {
		t.Errorf("the swimlanes of 127.0.0.1:9092: want 3 or more lanes in syn-sent with the client as owner and the drops as cause:\n%.3000s", dest)
	}

	shot := filepath.Join(dir, "report.png")
	run(filepath.Join(dir, "netlog-shot.json"), "--screenshot="+shot)
	colours, inked := screenshotInk(t, shot)
	t.Logf("screenshot: %d colours, %.1f%% of pixels not background", colours, inked*100)
	if colours < 8 || inked < 0.03 {
		t.Errorf("the screenshot looks blank: %d colours, %.1f%% of pixels not background", colours, inked*100)
	}
	for _, log := range []string{"netlog-dom.json", "netlog-shot.json"} {
		if reqs := pageRequests(t, filepath.Join(dir, log)); len(reqs) > 0 {
			t.Errorf("the page made requests: %v", reqs)
		}
	}
}

// screenshotInk decodes a PNG: how many colours it has, and the share
// of its pixels that are not the background (its top-left pixel's).
func screenshotInk(t *testing.T, path string) (colours int, inked float64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	b := img.Bounds()
	bg := img.At(b.Min.X, b.Min.Y)
	seen := map[[4]uint32]bool{}
	n, total := 0, 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := img.At(x, y)
			r, g, bl, a := c.RGBA()
			seen[[4]uint32{r, g, bl, a}] = true
			if c != bg {
				r0, g0, b0, a0 := bg.RGBA()
				if r != r0 || g != g0 || bl != b0 || a != a0 {
					n++
				}
			}
			total++
		}
	}
	return len(seen), float64(n) / float64(total)
}

// pageRequests are the requests the page made, from chromium's net log:
// those of its origin (file://), or with an initiator. The browser's own
// (component updates, network time: "not an origin") are not the
// page's, and fail anyway in a namespace with only lo.
func pageRequests(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("chromium wrote no net log: %v", err)
	}
	var log struct {
		Constants struct {
			LogEventTypes map[string]int `json:"logEventTypes"`
		} `json:"constants"`
		Events []struct {
			Type   int            `json:"type"`
			Params map[string]any `json:"params"`
		} `json:"events"`
	}
	if err := json.Unmarshal(b, &log); err != nil {
		// A log not closed properly ends without "]}".
		if err := json.Unmarshal(append(b, "]}"...), &log); err != nil {
			t.Fatalf("chromium's net log: %v", err)
		}
	}
	start, ok := log.Constants.LogEventTypes["URL_REQUEST_START_JOB"]
	if !ok {
		t.Fatalf("chromium's net log has no URL_REQUEST_START_JOB events type")
	}
	var out []string
	for _, e := range log.Events {
		if e.Type != start {
			continue
		}
		url, _ := e.Params["url"].(string)
		if url == "" { // the job's end
			continue
		}
		initiator, _ := e.Params["initiator"].(string)
		nik, _ := e.Params["network_isolation_key"].(string)
		if initiator != "not an origin" || strings.Contains(nik, "file://") {
			out = append(out, url)
		}
	}
	return out
}

// TestReportErrors: files socktrace read cannot read give report the
// same error, and leave no page; a missing -o or an existing page says
// what to do.
func TestReportErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.st")
	os.WriteFile(garbage, []byte("GET / HTTP/1.1\r\n\r\n"), 0o600)
	empty := filepath.Join(dir, "empty.st")
	os.WriteFile(empty, nil, 0o600)
	for _, file := range []string{garbage, empty, filepath.Join(dir, "missing.st")} {
		page := filepath.Join(dir, "page.html")
		out, err := runSocktrace(t, "report", file, "-o", page)
		readOut, readErr := runSocktrace(t, "read", file)
		if err == nil || readErr == nil || out != readOut {
			t.Errorf("report %s: %v, %q; read: %v, %q: want the same error", file, err, out, readErr, readOut)
		}
		if _, err := os.Stat(page); err == nil {
			t.Errorf("report %s left a page behind", file)
		}
		if left, _ := filepath.Glob(filepath.Join(dir, ".socktrace-report-*")); len(left) > 0 {
			t.Errorf("report %s left %v behind", file, left)
		}
	}
	if out, err := runSocktrace(t, "report", garbage); err == nil || !strings.Contains(out, "-o report.html") {
		t.Errorf("report without -o: %v, %q; want an error that says -o", err, out)
	}
	if out, err := runSocktrace(t, "report"); err == nil || !strings.Contains(out, "no capture file given") {
		t.Errorf("report without a file: %v, %q", err, out)
	}
}

// TestReportStaleDNS: the stale DNS story recorded with -w: the page puts
// the name's DNS answers on the destination's row (the old address, then
// the new one), with the stale-dns and failing alerts.
func TestReportStaleDNS(t *testing.T) {
	s := newDNSScene(t)
	capPath := filepath.Join(t.TempDir(), "cap.st")
	p := start(t, "-o", "json", "--dport", "9092", "--no-snapshot", "-w", capPath)
	_, _, goOn := s.startDNSClient(t, "once:kafka.example.com:9092")
	s.setHosts(t, "10.4.1.81")
	goOn()
	s.startDNSClient(t, "each:broker.example.com:9092")
	p.waitForIn(t, 20*time.Second, "a failing alert", alertFor("failing", 9092))
	p.waitForIn(t, 20*time.Second, "a stale-dns alert", alertFor("stale-dns", 9092))
	p.stop(t)
	out, err := runSocktrace(t, "report", capPath, "-o", "-")
	if err != nil {
		t.Fatalf("socktrace report: %v\n%.2000s", err, out)
	}
	row := out[strings.Index(out, `data-dest="10.4.1.80:9092 (kafka.example.com)"`)+1:]
	if i := strings.Index(row, "</g>"); i >= 0 {
		row = row[:i]
	}
	for _, want := range []string{
		`<g class="row failing" data-dest="10.4.1.80:9092 (kafka.example.com)">`,
		`class="alert-row alert-stale-dns"`, `class="alert-row alert-failing"`, `<line class="alert a-stale-dns"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, want := range []string{"kafka.example.com -&gt; 10.4.1.80 (TTL 60s)", "broker.example.com -&gt; kafka.example.com -&gt; 10.4.1.81"} {
		if !strings.Contains(row, want) {
			t.Errorf("the row of 10.4.1.80:9092 lacks the DNS answer %q:\n%.3000s", want, row)
		}
	}
}

// TestReportFlightRecording: a flight recording of the failing story
// makes a page that says which alert it was recorded for, with the
// failing destination's row, swimlanes and alert.
func TestReportFlightRecording(t *testing.T) {
	s := newStory(t)
	dir := t.TempDir()
	p := start(t, "-o", "json", "--netns", s.ns.Path(), "--no-snapshot",
		"--flight-recorder", "10m", "--flight-dir", dir, "--flight-after", "2s")
	startClient(t, s.ns, s.dropped, s.good, s.shut)
	p.waitForIn(t, 30*time.Second, "two flight recordings written", flightWritten(2))
	p.stop(t)
	files, _ := filepath.Glob(filepath.Join(dir, "*-failing-127.0.0.1_9092*"))
	if len(files) != 1 {
		t.Fatalf("flight recordings of 127.0.0.1:9092: %v, want 1", files)
	}
	out, err := runSocktrace(t, "report", files[0], "-o", "-")
	if err != nil {
		t.Fatalf("socktrace report: %v\n%.2000s", err, out)
	}
	for _, want := range []string{
		"<th>Flight recording of</th><td>failing 127.0.0.1:9092 at ",
		`<g class="row failing" data-dest="127.0.0.1:9092">`,
		`<div class="failing-dest" data-dest="127.0.0.1:9092">`,
		`class="alert-row alert-failing"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the page of %s lacks %q", files[0], want)
		}
	}
}
