package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/testkit/promtest"
)

// dashboardFile is the Grafana dashboard shipped for the agent.
const dashboardFile = "../../deploy/grafana/socktrace.json"

// dashboardPanel is what the tests read of a panel.
type dashboardPanel struct {
	Title      string `json:"title"`
	Type       string `json:"type"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// dashboardPanels reads the dashboard's panels (rows aside).
func dashboardPanels(t *testing.T) []dashboardPanel {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []dashboardPanel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var out []dashboardPanel
	for _, p := range d.Panels {
		if p.Type != "row" {
			out = append(out, p)
		}
	}
	return out
}

// TestGrafanaDashboard: the failing story (a port whose SYNs are
// dropped, a closed port, a healthy one), a listener whose accept queue
// is full and sockets left in CLOSE-WAIT, watched by an agent; and the
// stale DNS story (a client that keeps connecting to the address its
// name no longer resolves to) watched by a second, host-wide agent (as
// TestStaleDNSAgent runs it); both scraped by a real Prometheus: every
// query of every panel of the dashboard returns series, and the stale-DNS
// panel counts the stale destination. SYNs dropped on input, as the
// story's are, are of no socket; those to 9093 are dropped on output, of
// the client's sockets. The first agent runs the flight recorder, for
// its panel.
func TestGrafanaDashboard(t *testing.T) {
	panels := dashboardPanels(t)
	s := newStory(t)
	overflow := newOverflowScene(t, s.ns)
	neverCloses(t, s.ns, 3)
	// SYNs to 9093 dropped on their way out: drops of the client's
	// sockets (those dropped on input, before a socket, are of none).
	nft(t, s.ns, "table inet out {\n chain output {\n  type filter hook output priority 0;\n  tcp dport 9093 tcp flags syn drop\n }\n}\n")
	_, addr := startAgent(t, "--netns", s.ns.Path(), "--close-wait-after", "1s", "--reconcile-every", "1s",
		"--flight-recorder", "10m", "--flight-dir", t.TempDir(), "--flight-after", "1s")
	dnsScene := newDNSScene(t)
	_, dnsAddr := startAgent(t)
	prom := promtest.Start(t, promtest.Config{Targets: []string{addr, dnsAddr}})
	startClient(t, s.ns, s.dropped, s.good, s.shut, "127.0.0.1:9093")
	overflow.startClients(t)
	_, _, goOn := dnsScene.startDNSClient(t, "once:kafka.example.com:9092")
	dnsScene.setHosts(t, "10.4.1.81")
	goOn()
	prom.WaitTargetsUp(t, 20*time.Second)
	prom.WaitQuery(t, `socktrace_destination_failing{dport="9092"} == 1`, 30*time.Second, nil)

	// Grafana's variables, as Grafana fills them in: every node, and a
	// rate window of a few scrapes.
	vars := strings.NewReplacer(`$instance`, `.*`, `$__rate_interval`, `15s`)
	deadline := time.Now().Add(45 * time.Second)
	for _, p := range panels {
		for _, target := range p.Targets {
			expr := vars.Replace(target.Expr)
			// The stale-DNS panel: the stale destination, not only the
			// gauge at 0.
			enough := func(got []promtest.Sample) bool { return len(got) > 0 }
			if strings.Contains(expr, "socktrace_stale_dns_destinations") {
				enough = func(got []promtest.Sample) bool {
					for _, s := range got {
						if s.Value >= 1 {
							return true
						}
					}
					return false
				}
			}
			var got []promtest.Sample
			var err error
			for {
				got, err = prom.Query(expr)
				if (err == nil && enough(got)) || time.Now().After(deadline) {
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
			if err != nil || !enough(got) {
				t.Errorf("panel %q: query %s: %v, %s; want series (a stale destination for stale DNS)", p.Title, expr, err, promtest.FormatSamples(got))

			} else {
				t.Logf("panel %q: %d series, e.g. %s", p.Title, len(got), promtest.FormatLabels(got[0].Labels))
			}
		}
	}
	overflow.stopClients()
}

// TestGrafanaDashboardImportable: the dashboard is one a Grafana
// imports anywhere: a datasource variable every panel and query uses,
// an instance variable from socktrace_up, no instance, host or
// datasource written in, the panels the issue lists.
func TestGrafanaDashboardImportable(t *testing.T) {
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID        string `json:"uid"`
		Title      string `json:"title"`
		Templating struct {
			List []struct {
				Type, Name string
				Query      any `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" || vars["instance"] != "query" {
		t.Errorf("variables %v: want a datasource variable \"datasource\" and a query variable \"instance\"", vars)
	}
	// Nothing of one installation: no address, no datasource uid.
	for _, bad := range []string{"localhost", "127.0.0.1", ":9", "DS_PROMETHEUS"} {
		if strings.Contains(string(b), bad) {
			t.Errorf("the dashboard holds %q: something of one installation", bad)
		}
	}
	titles := map[string]bool{}
	for _, p := range dashboardPanels(t) {
		titles[p.Title] = true
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, `instance=~"$instance"`) {
				t.Errorf("panel %q: query %s does not follow the instance variable", p.Title, tg.Expr)
			}
		}
	}
	for _, want := range []string{"Failing destinations", "Failure streaks", "Connect outcomes (per second)", "Handshake time",
		"Sockets by state", "CLOSE-WAIT leaks", "Listen overflows (SYNs dropped per second)", "Packets dropped on this host (per second)",
		"Stale DNS", "Lost and skipped transitions (per second)", "Agent memory", "Agent CPU"} {
		if !titles[want] {
			t.Errorf("no panel %q", want)
		}
	}
}
